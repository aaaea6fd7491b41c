package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/csrd/csrd/auth"
	"github.com/csrd/csrd/store"
)

// Forwarder sends a request this node authorised but cannot carry out (the
// record's key is on a token it does not reach) to a live node that
// reaches the token, and verifies requests forwarded to this node.
type Forwarder struct {
	reg    *Registry
	secret []byte
	client *http.Client
	now    func() time.Time
}

// ForwarderOptions configures a Forwarder.
type ForwarderOptions struct {
	// Secret is the nodes' shared secret (cluster.secret_file); without it
	// nothing is forwarded or accepted.
	Secret string
	// CAFile verifies https peers (cluster.ca_file); "" uses the system's
	// CAs.
	CAFile string
	// Timeout bounds one forwarded request (csrd's request_timeout).
	Timeout time.Duration
}

// NewForwarder returns the forwarder of reg's node.
func NewForwarder(reg *Registry, o ForwarderOptions) (*Forwarder, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pemData, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cluster: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("cluster: ca_file %s: no PEM certificate in it", o.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	tr.Proxy = nil // node to node, never through a proxy from the environment
	return &Forwarder{
		reg: reg, secret: []byte(o.Secret),
		client: &http.Client{Transport: tr, Timeout: o.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		now: time.Now,
	}, nil
}

// Nodes lists the registered nodes (see Registry.Nodes).
func (f *Forwarder) Nodes(ctx context.Context) ([]NodeView, error) { return f.reg.Nodes(ctx) }

// Enabled reports whether forwarding is configured (a shared secret).
func (f *Forwarder) Enabled() bool { return f != nil && len(f.secret) > 0 }

// ErrNoNode: no live node other than this one reaches the token.
var ErrNoNode = errors.New("cluster: no live node reaches the token")

// hopHeaders are not forwarded: the connection's own, and the client's
// credentials (the identity travels signed instead).
var hopHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "Connection", "Keep-Alive",
	"Transfer-Encoding", "Te", "Trailer", "Upgrade", "Proxy-Connection", "Content-Length", "Host",
	"X-Forwarded-For", HeaderNode, HeaderIdentity, HeaderClient, HeaderSignature}

// Forward sends r (whose body was body) on behalf of id, who called from
// client, to a live node that reaches the token label/serial, trying the
// next one when a node cannot be reached. It returns the first answer, with
// the node that gave it; ErrNoNode when no node is live, else the last
// error.
func (f *Forwarder) Forward(ctx context.Context, r *http.Request, body []byte, id auth.Identity, client, label, serial string) (*http.Response, string, error) {
	if !f.Enabled() {
		return nil, "", fmt.Errorf("%w: forwarding is off on this node (no cluster.secret_file)", ErrNoNode)
	}
	peers, err := f.reg.Peers(ctx, label, serial)
	if err != nil {
		return nil, "", err
	}
	if len(peers) == 0 {
		return nil, "", ErrNoNode
	}
	var last error
	for _, p := range peers {
		resp, err := f.send(ctx, p, r, body, id, client)
		if err == nil {
			return resp, p.Name, nil
		}
		last = fmt.Errorf("cluster: forward to node %s: %w", p.Name, err)
	}
	return nil, "", last
}

func (f *Forwarder) send(ctx context.Context, p store.Node, r *http.Request, body []byte, id auth.Identity, client string) (*http.Response, error) {
	out, err := http.NewRequestWithContext(ctx, r.Method, strings.TrimRight(p.URL, "/")+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	out.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	if err := sign(out, f.secret, f.reg.Name(), body, id, client, f.now()); err != nil {
		return nil, err
	}
	return f.client.Do(out)
}

// Verify checks a request another node forwarded here (see Signed).
func (f *Forwarder) Verify(r *http.Request, body []byte) (id auth.Identity, client, node string, err error) {
	if f == nil {
		return Verify(r, nil, body, time.Now())
	}
	return Verify(r, f.secret, body, f.now())
}
