package acmetest

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Gate is an HTTPS reverse proxy in front of a Pebble that can hold the
// requests to one kind of URL: a test freezes an ACME order at a chosen
// step (e.g. finalize), kills the client there, and then lets the held
// request reach the CA or drops it. Pebble builds its URLs from the Host
// the client sent, so every later request goes through the Gate too.
type Gate struct {
	// Directory and RootsFile are what the client is configured with.
	Directory string
	RootsFile string

	proxy *httputil.ReverseProxy
	mu    sync.Mutex
	hold  string        // path substring to hold; "" holds nothing
	held  chan struct{} // closed when a request is being held
	open  chan bool     // receives the decision for the held request
}

// StartGate puts a Gate in front of p for the rest of the test.
func StartGate(t testing.TB, p *Pebble) *Gate {
	t.Helper()
	up, err := url.Parse(p.Directory)
	if err != nil {
		t.Fatal(err)
	}
	g := &Gate{proxy: &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(&url.URL{Scheme: up.Scheme, Host: up.Host})
			r.Out.Host = r.In.Host // Pebble's URLs then name the Gate
		},
		Transport: p.client.Transport,
	}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(g.serve))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	g.RootsFile = filepath.Join(t.TempDir(), "gate-ca.pem")
	if err := os.WriteFile(g.RootsFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	g.Directory = srv.URL + up.Path
	return g
}

// Hold makes the next request whose path contains substr wait for Release;
// the returned channel is closed once such a request is held.
func (g *Gate) Hold(substr string) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.hold, g.held, g.open = substr, make(chan struct{}), make(chan bool, 1)
	return g.held
}

// Release ends the hold: the held request goes on to the CA (forward) or
// is answered 503 without reaching it.
func (g *Gate) Release(forward bool) {
	g.mu.Lock()
	open := g.open
	g.hold = ""
	g.mu.Unlock()
	if open != nil {
		open <- forward
	}
}

func (g *Gate) serve(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	hold, held, open := g.hold, g.held, g.open
	if hold != "" && strings.Contains(r.URL.Path, hold) {
		g.hold = "" // one request
	} else {
		hold = ""
	}
	g.mu.Unlock()
	if hold == "" {
		g.proxy.ServeHTTP(w, r)
		return
	}
	close(held)
	if !<-open {
		http.Error(w, "held by the test's gate", http.StatusServiceUnavailable)
		return
	}
	// The client may be gone (killed): the request still reaches the CA.
	g.proxy.ServeHTTP(w, r.WithContext(context.WithoutCancel(r.Context())))
}
