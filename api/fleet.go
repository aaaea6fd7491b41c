package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/csrd/csrd/auth"
	"github.com/csrd/csrd/cluster"
	"github.com/csrd/csrd/lifecycle"
)

// Fleet is what the API needs from the other csrd nodes on the same
// database; *cluster.Forwarder implements it.
type Fleet interface {
	Nodes(ctx context.Context) ([]cluster.NodeView, error)
	// Enabled reports whether requests are forwarded (and accepted).
	Enabled() bool
	Forward(ctx context.Context, r *http.Request, body []byte, id auth.Identity, client, label, serial string) (*http.Response, string, error)
	Verify(r *http.Request, body []byte) (id auth.Identity, client, node string, err error)
}

// Forwarding. Any node answers any request; an operation on a key in a
// token this node does not reach (lifecycle.ElsewhereError) is authorised
// here, then sent to a live node that reaches the token, whose answer is
// the client's. The receiving node takes the identity the forwarding node
// established — signed with the nodes' shared secret — checks its grants
// again, audits the operation under that identity and the client's
// address, and never forwards it again.

// forwardable wraps the handlers of token-bound operations (delete,
// import, enrollment, retire, renew). It keeps the body, so that the
// request can be sent on whole.
func (s *Server) forwardable(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.fleet == nil || !s.fleet.Enabled() {
			return next(c)
		}
		r := c.Request()
		// One byte more than a handler accepts: a larger body fails in the
		// handler (413) before anything could be forwarded.
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
		if err != nil {
			return err
		}
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
		err = next(c)
		var ee *lifecycle.ElsewhereError
		// A forwarded request is never forwarded again, whatever its
		// signature: two nodes must not pass it back and forth.
		if !errors.As(err, &ee) || cluster.Signed(r) || c.Response().Committed {
			return err
		}
		return s.forward(c, body, ee)
	}
}

// forward sends the request to a node that reaches ee's token and copies
// its answer to the client.
func (s *Server) forward(c echo.Context, body []byte, ee *lifecycle.ElsewhereError) error {
	st := auditOf(c)
	r := c.Request()
	resp, node, err := s.fleet.Forward(r.Context(), r, body, st.identity, c.RealIP(), ee.TokenLabel, ee.TokenSerial)
	if err != nil {
		requestLogger(c, s.log).Warn().Err(err).Str("token", ee.TokenLabel).Str("serial", ee.TokenSerial).
			Int64("record", ee.ID).Msg("no node could take the forwarded request")
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeHSMUnavailable,
			Msg: fmt.Sprintf("the key of record %d is on token %q (serial %s), which no live csrd node reaches now; try again later",
				ee.ID, ee.TokenLabel, ee.TokenSerial)}
	}
	defer resp.Body.Close()
	st.forwardedTo = node
	if st.recordID == 0 {
		st.recordID = ee.ID
	}
	h := c.Response().Header()
	for _, k := range []string{echo.HeaderContentType, echo.HeaderLocation, "X-Total-Count", "Retry-After"} {
		if v := resp.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	c.Response().WriteHeader(resp.StatusCode)
	_, err = io.Copy(c.Response(), io.LimitReader(resp.Body, 16<<20))
	requestLogger(c, s.log).Info().Str("node", node).Int("status", resp.StatusCode).Int64("record", ee.ID).
		Msg("request forwarded to the node that reaches the token")
	return err
}

// forwardedIdentity authenticates a request another node forwarded: the
// signature must verify with this node's secret. It reads (and restores)
// the body, which the signature covers.
func (s *Server) forwardedIdentity(c echo.Context) (auth.Identity, error) {
	r := c.Request()
	if s.fleet == nil {
		return auth.Identity{}, fmt.Errorf("%w: %w", auth.ErrUnauthenticated, cluster.ErrBadSignature)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return auth.Identity{}, err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	id, client, node, err := s.fleet.Verify(r, body)
	if err != nil {
		requestLogger(c, s.log).Warn().Err(err).Str("node", r.Header.Get(cluster.HeaderNode)).Msg("forwarded request refused")
		return auth.Identity{}, fmt.Errorf("%w: %w", auth.ErrUnauthenticated, err)
	}
	st := auditOf(c)
	st.forwardedBy, st.source = node, client
	return id, nil
}

// authenticateForwarded is authenticate for a request another node
// forwarded: the identity it established, its grants checked again here.
func (s *Server) authenticateForwarded(c echo.Context, op auth.Operation, next echo.HandlerFunc) error {
	st := auditOf(c)
	id, err := s.forwardedIdentity(c)
	if err != nil {
		if !errors.Is(err, auth.ErrUnauthenticated) {
			return err
		}
		st.unauthenticated = true
		s.metrics.AuthFailure("bad_node_signature")
		return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Msg: "authentication failed"}
	}
	st.identity = id
	c.Set(ctxIdentity, id)
	if op != "" && !id.Grants.Allows(op) {
		st.forbidden = true
		return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Msg: fmt.Sprintf("%s may not %s", id.Name, opText(op))}
	}
	return next(c)
}

// NodeView is a csrd node as GET /csrd/v1/nodes shows it.
type NodeView struct {
	Name      string      `json:"name"`
	URL       string      `json:"url"`
	Version   string      `json:"version"`
	Started   time.Time   `json:"started"`
	Heartbeat time.Time   `json:"heartbeat"`
	Live      bool        `json:"live"`
	Self      bool        `json:"self"`
	Tokens    []TokenView `json:"tokens"`
}

// TokenView is a token a node reaches.
type TokenView struct {
	Label  string `json:"label"`
	Serial string `json:"serial"`
}

func (s *Server) fleetRoutes() {
	s.csrdRoute(http.MethodGet, "/nodes", s.listNodes)
}

func (s *Server) listNodes(c echo.Context) error {
	ns, err := s.fleet.Nodes(c.Request().Context())
	if err != nil {
		return err
	}
	out := make([]NodeView, len(ns))
	for i, n := range ns {
		out[i] = NodeView{Name: n.Name, URL: n.URL, Version: n.Version, Started: n.Started, Heartbeat: n.Heartbeat,
			Live: n.Live, Self: n.Self, Tokens: []TokenView{}}
		for _, t := range n.Tokens {
			out[i].Tokens = append(out[i].Tokens, TokenView{Label: t.Label, Serial: t.Serial})
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"nodes": out})
}
