package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// client drives csrd's Generate endpoint over keep-alive connections.
type client struct {
	hc     *http.Client
	url    string
	bearer string
}

func newClient(srv *server, conns int) *client {
	tr := &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     time.Minute,
	}
	return &client{hc: &http.Client{Transport: tr, Timeout: 15 * time.Minute}, url: srv.url + "/CSRGeneration/Generate", bearer: srv.bearer}
}

var csrPrefix = []byte(`{"CSR":"-----BEGIN CERTIFICATE REQUEST-----`)

// generate makes one CSR; anything but a 200 with a CSR is an error.
func (c *client) generate(ctx context.Context, body []byte) error {
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
	if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(b, csrPrefix) {
		return &httpError{status: resp.StatusCode, body: string(b)}
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

func (c *client) close() { c.hc.CloseIdleConnections() }
