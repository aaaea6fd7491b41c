package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// client makes CSRs through csrd's Generate endpoint over keep-alive
// connections; a closed loop's workers share one.
type client interface {
	generate(ctx context.Context, body []byte) error
	close()
}

// newClient is the lean client, or net/http's with Options.NetHTTP.
func (o Options) newClient(srv *server, conns int) (client, error) {
	if o.NetHTTP {
		return newStdClient(srv, conns), nil
	}
	return newLeanClient(srv, conns)
}

func (o Options) clientName() string {
	if o.NetHTTP {
		return "net/http"
	}
	return "lean"
}

// stdClient is net/http's client, kept to compare the lean one with.
type stdClient struct {
	hc     *http.Client
	url    string
	bearer string
}

func newStdClient(srv *server, conns int) *stdClient {
	tr := &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     time.Minute,
	}
	return &stdClient{hc: &http.Client{Transport: tr, Timeout: 15 * time.Minute}, url: srv.url + "/CSRGeneration/Generate", bearer: srv.bearer}
}

var csrPrefix = []byte(`{"CSR":"-----BEGIN CERTIFICATE REQUEST-----`)

// generate makes one CSR; anything but a 200 with a CSR is an error.
func (c *stdClient) generate(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
	req.Header.Set("Authorization", "Bearer "+c.bearer)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	return answer(resp.StatusCode, b)
}

// answer is the one check both clients make: anything but a 200 with a CSR
// is an error carrying the status and body.
func answer(status int, body []byte) error {
	if status != http.StatusOK || !bytes.HasPrefix(body, csrPrefix) {
		return &httpError{status: status, body: string(body)}
	}
	return nil
}

type httpError struct {
	status int
	body   string
}

func (e *httpError) Error() string { return fmt.Sprintf("bench: HTTP %d: %s", e.status, e.body) }

// notSupported reports whether csrd answered "not supported by this server".
func notSupported(err error) (string, bool) {
	he, ok := err.(*httpError)
	if ok && he.status == http.StatusBadRequest && bytes.Contains([]byte(he.body), []byte(`"0xA0030002"`)) {
		return he.body, true
	}
	return "", false
}

func (c *stdClient) close() { c.hc.CloseIdleConnections() }
