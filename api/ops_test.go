package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/health"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
)

// TestHealthEndpoints: /healthz and /readyz sit outside the base path, need
// no Keyfactor headers, and name failing checks without saying why.
func TestHealthEndpoints(t *testing.T) {
	const secret = "CKR_GENERAL_ERROR on slot 7 /var/lib/secret-path"
	var hsmDown bool
	var mu sync.Mutex
	ready := health.New(time.Second, 0,
		health.Check{Name: "hsm", Func: func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			if hsmDown {
				return errors.New(secret)
			}
			return testToken.Ping(context.Background())
		}},
		health.Check{Name: "database", Func: testStore.Ping},
	)
	srv := httptest.NewServer(api.New(api.Options{BasePath: "/KeyfactorAPI", Log: zerolog.Nop(), Readiness: ready}))
	defer srv.Close()

	get := func(method, path string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	tests := []struct {
		name, method, path string
		down               bool
		wantStatus         int
		wantBody           map[string]any
	}{
		{"healthz", "GET", "/healthz", false, 200, map[string]any{"status": "ok"}},
		{"healthz while HSM down", "GET", "/healthz", true, 200, map[string]any{"status": "ok"}},
		{"readyz", "GET", "/readyz", false, 200,
			map[string]any{"status": "ready", "checks": map[string]any{"hsm": "ok", "database": "ok"}}},
		{"readyz HEAD", "HEAD", "/readyz", false, 200, nil},
		{"readyz HSM down", "GET", "/readyz", true, 503,
			map[string]any{"status": "not ready", "checks": map[string]any{"hsm": "failing", "database": "ok"}}},
		{"readyz under base path is not a route", "GET", "/KeyfactorAPI/readyz", false, 404, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			hsmDown = tt.down
			mu.Unlock()
			status, hdr, body := get(tt.method, tt.path)
			if status != tt.wantStatus {
				t.Fatalf("status %d, want %d (%s)", status, tt.wantStatus, body)
			}
			if status == 503 && hdr.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			if strings.Contains(body, "CKR_") || strings.Contains(body, "secret") {
				t.Errorf("body reveals internals: %s", body)
			}
			if tt.wantBody == nil {
				return
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if g, w := mustJSON(t, got), mustJSON(t, tt.wantBody); g != w {
				t.Errorf("body %s, want %s", g, w)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// heldGenerator runs the real use case, but only after the test releases it,
// so the test decides exactly how long a generation holds its slot.
type heldGenerator struct {
	api.Generator
	entered chan struct{}
	release chan struct{}
}

func (g *heldGenerator) Generate(ctx context.Context, req lifecycle.GenerateRequest) (*lifecycle.GenerateResult, error) {
	g.entered <- struct{}{}
	<-g.release
	return g.Generator.Generate(ctx, req)
}

// TestGenerationBackpressure: with one slot, requests arriving while it is
// held wait at most GenerationWait and then get 503 + Retry-After (and create
// nothing); a request that finds the slot freed within its wait goes through.
func TestGenerationBackpressure(t *testing.T) {
	body := `{"Subject":"CN=burst.example.com","KeyType":"ECC","KeyLength":256}`
	type result struct {
		status int
		hdr    http.Header
		body   string
	}
	// server has one generation slot; its Generator runs the real use case
	// once the test releases it.
	server := func(wait time.Duration) (*api.Server, *heldGenerator, func() result) {
		gen := &heldGenerator{
			Generator: lifecycle.New(lifecycle.HSMToken{Token: testToken}, testStore, policy.Default(), zerolog.Nop()),
			entered:   make(chan struct{}, 8), release: make(chan struct{}),
		}
		s := api.New(api.Options{BasePath: "/KeyfactorAPI", Log: zerolog.Nop(), Generator: gen,
			MaxGenerations: 1, GenerationWait: wait, NoAuth: true})
		srv := httptest.NewServer(s)
		t.Cleanup(srv.Close)
		return s, gen, func() result {
			req, _ := http.NewRequest("POST", srv.URL+generatePath, strings.NewReader(body))
			req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return result{body: err.Error()}
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return result{resp.StatusCode, resp.Header, string(b)}
		}
	}
	ok := func(name string, r result) {
		t.Helper()
		if r.status != http.StatusOK || !strings.Contains(r.body, "BEGIN CERTIFICATE REQUEST") {
			t.Errorf("%s request: %d %s", name, r.status, r.body)
		}
	}

	t.Run("burst refused", func(t *testing.T) {
		s, gen, post := server(200 * time.Millisecond)
		first := make(chan result, 1)
		go func() { first <- post() }()
		<-gen.entered // the first generation holds the only slot
		before, _ := testStore.CountByState(context.Background())
		const burst = 5
		var wg sync.WaitGroup
		res := make(chan result, burst)
		start := time.Now()
		for range burst {
			wg.Add(1)
			go func() { defer wg.Done(); res <- post() }()
		}
		wg.Wait()
		close(res)
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("refusals took %v; the wait must be bounded", d)
		}
		for r := range res {
			var eb api.ErrorBody
			_ = json.Unmarshal([]byte(r.body), &eb)
			if r.status != http.StatusServiceUnavailable || eb.ErrorCode != api.CodeBusy || r.hdr.Get("Retry-After") == "" {
				t.Errorf("burst request: %d %s Retry-After=%q, want 503 %s with Retry-After", r.status, r.body, r.hdr.Get("Retry-After"), api.CodeBusy)
			}
		}
		after, _ := testStore.CountByState(context.Background())
		if mustJSON(t, before) != mustJSON(t, after) {
			t.Errorf("refused requests changed the records: %v -> %v", before, after)
		}
		close(gen.release)
		ok("first", <-first)
		if n, w := s.GenerationsInFlight(); n != 0 || w != 0 {
			t.Errorf("after the burst: %d in flight, %d waiting", n, w)
		}
	})

	t.Run("waiter gets the freed slot", func(t *testing.T) {
		s, gen, post := server(time.Minute)
		first, second := make(chan result, 1), make(chan result, 1)
		go func() { first <- post() }()
		<-gen.entered
		go func() { second <- post() }()
		for {
			if _, waiting := s.GenerationsInFlight(); waiting == 1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		close(gen.release)
		ok("first", <-first)
		ok("waiting", <-second)
	})
}
