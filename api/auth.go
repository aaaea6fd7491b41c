package api

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/csrd/csrd/auth"
	"github.com/csrd/csrd/cluster"
)

// Authenticator checks credentials presented from a source (the client
// address as throttleKey groups it) and throttles the sources that guess;
// *auth.Authenticator implements it. Errors: auth.ErrUnauthenticated,
// *auth.ThrottledError, auth.ErrBusy, or the request's context error.
type Authenticator interface {
	Basic(ctx context.Context, src, name, password string) (auth.Identity, error)
	Bearer(ctx context.Context, src, token string) (auth.Identity, error)
	Certificate(ctx context.Context, src string, leaf *x509.Certificate) (auth.Identity, error)
	Malformed(src string) error
}

// errNoCredentials: the request carries neither an Authorization header nor
// a verified client certificate.
var errNoCredentials = errors.New("api: no credentials")

const (
	ctxIdentity = "csrd.identity"
	// wwwAuthenticate offers both schemes Keyfactor clients use (RFC 7617,
	// RFC 6750).
	wwwBasic  = `Basic realm="csrd", charset="UTF-8"`
	wwwBearer = `Bearer realm="csrd"`
	// maxClaimedName bounds what a failed attempt's user name may put in
	// the audit log.
	maxClaimedName = 128
)

// authenticate is the per-route middleware that establishes who is calling
// and checks that they may perform op ("" = any authenticated identity).
// What the throttle refuses is answered 429 with Retry-After and a login
// the password verifier cannot take 503, both at once and without an
// audit row (anyone could flood the table with them).
func (s *Server) authenticate(op auth.Operation) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			st := auditOf(c)
			st.operation = op
			if cluster.Signed(c.Request()) {
				// Another node authenticated the caller: its signature, not
				// the caller's credentials, is checked here.
				return s.authenticateForwarded(c, op, next)
			}
			if s.noAuth {
				st.identity = auth.Anonymous()
				c.Set(ctxIdentity, st.identity)
				return next(c)
			}
			id, err := s.identify(c)
			if err != nil {
				return s.refuseAuth(c, err)
			}
			st.identity = id
			c.Set(ctxIdentity, id)
			if op != "" && !id.Grants.Allows(op) {
				st.forbidden = true
				return &Error{Status: http.StatusForbidden, Code: CodeForbidden,
					Msg: fmt.Sprintf("%s may not %s", id.Name, opText(op))}
			}
			return next(c)
		}
	}
}

// refuseAuth answers a request authenticate could not identify.
func (s *Server) refuseAuth(c echo.Context, err error) error {
	st := auditOf(c)
	var te *auth.ThrottledError
	switch {
	case errors.As(err, &te):
		st.throttled = true
		secs := int((te.RetryAfter + time.Second - 1) / time.Second)
		c.Response().Header().Set("Retry-After", strconv.Itoa(secs))
		s.metrics.AuthFailure("throttled")
		msg := fmt.Sprintf("too many failed authentication attempts from this address; try again in %d s", secs)
		if !te.Locked {
			msg = fmt.Sprintf("too many authentication attempts from this address in progress; try again in %d s", secs)
		}
		return &Error{Status: http.StatusTooManyRequests, Code: CodeThrottled, Msg: msg}
	case errors.Is(err, auth.ErrBusy):
		st.throttled = true
		s.metrics.AuthFailure("busy")
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeAuthBusy,
			Msg: "too many logins are being verified; try again later"}
	case !errors.Is(err, errNoCredentials) && !errors.Is(err, auth.ErrUnauthenticated):
		return err // e.g. the client went away while waiting to verify
	}
	reason := "no_credentials"
	if errors.Is(err, auth.ErrUnauthenticated) {
		reason = "bad_credentials"
	}
	st.unauthenticated = reason == "bad_credentials"
	st.noCredentials = !st.unauthenticated
	s.metrics.AuthFailure(reason)
	h := c.Response().Header()
	h.Add(echo.HeaderWWWAuthenticate, wwwBasic)
	h.Add(echo.HeaderWWWAuthenticate, wwwBearer)
	msg := "authentication required: send Authorization: Basic (DOMAIN\\user:password) or Bearer (API token)"
	if reason == "bad_credentials" {
		msg = "authentication failed"
	}
	return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Msg: msg}
}

// identify finds the caller: the Authorization header when there is one
// (explicit credentials win), else the verified client certificate. Only
// wrong credentials count against the source: a client that sent none is
// not guessing.
func (s *Server) identify(c echo.Context) (auth.Identity, error) {
	st := auditOf(c)
	r := c.Request()
	if s.auth == nil {
		return auth.Identity{}, errNoCredentials
	}
	src := throttleKey(c.RealIP())
	if h := r.Header.Get(echo.HeaderAuthorization); h != "" {
		scheme, cred, _ := strings.Cut(strings.TrimSpace(h), " ")
		cred = strings.TrimSpace(cred)
		switch {
		case strings.EqualFold(scheme, "Basic"):
			st.method = auth.MethodBasic
			name, password, ok := decodeBasic(cred)
			if !ok {
				return auth.Identity{}, s.auth.Malformed(src)
			}
			st.claimed = claimedName(name)
			return s.auth.Basic(r.Context(), src, name, password)
		case strings.EqualFold(scheme, "Bearer"):
			st.method = auth.MethodBearer
			if id := auth.TokenID(cred); id != "" {
				st.claimed = "token " + id
			}
			return s.auth.Bearer(r.Context(), src, cred)
		}
		return auth.Identity{}, s.auth.Malformed(src)
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		// VerifiedChains, not PeerCertificates: only a certificate the TLS
		// layer chained to the configured client CA identifies anyone.
		st.method = auth.MethodMTLS
		leaf := r.TLS.VerifiedChains[0][0]
		st.claimed = claimedName("cn=" + leaf.Subject.CommonName)
		return s.auth.Certificate(r.Context(), src, leaf)
	}
	return auth.Identity{}, errNoCredentials
}

// decodeBasic decodes RFC 7617 credentials. The user name may carry a
// Windows domain ("DOMAIN\user"); it ends at the first ':'.
func decodeBasic(cred string) (name, password string, ok bool) {
	raw, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		if raw, err = base64.RawStdEncoding.DecodeString(cred); err != nil {
			return "", "", false
		}
	}
	if !utf8.Valid(raw) {
		return "", "", false
	}
	name, password, ok = strings.Cut(string(raw), ":")
	return name, password, ok && name != ""
}

// claimedName makes a client-supplied name safe to log and audit.
func claimedName(n string) string {
	n = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, n)
	if len(n) > maxClaimedName {
		n = n[:maxClaimedName]
		for !utf8.ValidString(n) {
			n = n[:len(n)-1]
		}
	}
	return n
}

// identityOf returns the caller established by authenticate.
func identityOf(c echo.Context) (auth.Identity, bool) {
	id, ok := c.Get(ctxIdentity).(auth.Identity)
	return id, ok
}

// authorizeGenerate checks the Generate request's pattern and template
// against the caller's scope.
func (s *Server) authorizeGenerate(c echo.Context, req *GenerateRequest) error {
	pattern := 0
	if req.EnrollmentPatternID != nil {
		pattern = *req.EnrollmentPatternID
	}
	return s.authorizeTarget(c, pattern, req.Template)
}

// authorizeTarget checks that the caller may generate for the enrollment
// pattern and template the request names (see auth.Grants.AllowsTarget).
func (s *Server) authorizeTarget(c echo.Context, pattern int, template string) error {
	id, ok := identityOf(c)
	if ok && id.Grants.AllowsTarget(pattern, template) {
		return nil
	}
	auditOf(c).forbidden = true
	what := "without naming an enrollment pattern or template"
	switch {
	case pattern != 0:
		what = "for enrollment pattern " + strconv.Itoa(pattern)
	case template != "":
		what = "for template " + strconv.Quote(template)
	}
	return &Error{Status: http.StatusForbidden, Code: CodeForbidden,
		Msg: fmt.Sprintf("%s may not generate keys %s", id.Name, what)}
}

func opText(op auth.Operation) string {
	switch op {
	case auth.OpGenerate:
		return "generate keys"
	case auth.OpPendingRead:
		return "read pending CSRs"
	case auth.OpPendingDelete:
		return "delete pending CSRs"
	case auth.OpImport:
		return "import or recover certificates"
	case auth.OpEnroll:
		return "enroll certificates"
	case auth.OpMetrics:
		return "read metrics"
	}
	return "use this administrative endpoint"
}
