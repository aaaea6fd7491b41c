package acmeca

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
)

// HTTP01 answers http-01 challenges (RFC 8555 8.3). It is the handler of a
// plain-HTTP listener of its own, apart from the API, that serves
// /.well-known/acme-challenge/<token> for the challenges in progress and
// nothing else. CAs that share a listen address share one HTTP01.
type HTTP01 struct {
	mu      sync.RWMutex
	answers map[string]string // token → key authorization
}

// wellKnown is the path prefix RFC 8555 8.3 fixes.
const wellKnown = "/.well-known/acme-challenge/"

// NewHTTP01 returns a responder with no challenge in progress.
func NewHTTP01() *HTTP01 { return &HTTP01{answers: map[string]string{}} }

// Type is "http-01".
func (*HTTP01) Type() string { return "http-01" }

// Present serves ch's key authorization until cleanup.
func (h *HTTP01) Present(_ context.Context, cl *acme.Client, _ *acme.Authorization, ch *acme.Challenge) (func(), error) {
	ka, err := cl.HTTP01ChallengeResponse(ch.Token)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.answers[ch.Token] = ka
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		delete(h.answers, ch.Token)
		h.mu.Unlock()
	}, nil
}

// ServeHTTP answers GET and HEAD of a token in progress; everything else
// is a 404 (or 405), with no body worth reading.
func (h *HTTP01) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.URL.Path, wellKnown)
	if !ok || token == "" || strings.Contains(token, "/") {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h.mu.RLock()
	ka, found := h.answers[token]
	h.mu.RUnlock()
	if !found {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(ka))
}

// Server is an http.Server for the responder, with timeouts that suit a
// listener open to the network.
func (h *HTTP01) Server() *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}
}
