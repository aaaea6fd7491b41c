package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/auth"
	"github.com/csrd/csrd/lifecycle"
)

// stallingBody is a request body sent slowly: its first Read reports that
// the server has begun reading it and then waits for the test before the
// rest of the body (and EOF) arrives.
type stallingBody struct {
	parts   []string
	reading chan struct{} // closed at the first Read
	resume  chan struct{} // the rest of the body once closed
	started bool
}

func (b *stallingBody) Read(p []byte) (int, error) {
	if !b.started {
		b.started = true
		close(b.reading)
		<-b.resume
	}
	if len(b.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.parts[0])
	if b.parts[0] = b.parts[0][n:]; b.parts[0] == "" {
		b.parts = b.parts[1:]
	}
	return n, nil
}

// serve runs one request through the server in process and returns the
// status, headers and decoded error body.
func serve(h http.Handler, user string, body io.Reader) (int, http.Header, api.ErrorBody) {
	req := httptest.NewRequest(http.MethodPost, generatePath, body)
	req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", basic(user, scopePass))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var eb api.ErrorBody
	_ = json.Unmarshal(rec.Body.Bytes(), &eb)
	return rec.Code, rec.Header(), eb
}

// TestGenerationSlotAfterAuthorisation: a Generate takes a generation slot
// only once its body is read and its target authorised. With one slot, a
// user whose scope refuses the target and who sends the body slowly holds
// no slot while the server reads it; another user's Generate meanwhile
// gets the slot; the refused request ends 403 and leaves the slot free.
func TestGenerationSlotAfterAuthorisation(t *testing.T) {
	users := map[string]auth.Grants{
		"p1":  {Operations: []auth.Operation{auth.OpGenerate}, EnrollmentPatterns: []int{1}},
		"svc": {Operations: []auth.Operation{auth.OpGenerate}},
	}
	s, _, _ := authedServer(t, users, api.Options{MaxGenerations: 1, GenerationWait: 100 * time.Millisecond})
	slow := &stallingBody{
		parts:   []string{`{"Subject":"CN=slow.example.com","KeyType":"ECC",`, `"KeyLength":256,"EnrollmentPatternId":3}`},
		reading: make(chan struct{}), resume: make(chan struct{}),
	}
	done := make(chan int, 1)
	go func() {
		status, _, _ := serve(s, "p1", slow)
		done <- status
	}()
	<-slow.reading // past authentication and every middleware, reading the body
	if n, w := s.GenerationsInFlight(); n != 0 || w != 0 {
		t.Errorf("while the body trickles in: %d slots held, %d waiting; want none", n, w)
	}
	status, _, eb := serve(s, "svc", strings.NewReader(`{"Subject":"CN=prompt.example.com","KeyType":"ECC","KeyLength":256}`))
	if status != http.StatusOK {
		t.Errorf("Generate beside the trickling body: %d %+v; want 200", status, eb)
	}
	close(slow.resume)
	if status := <-done; status != http.StatusForbidden {
		t.Errorf("the out-of-scope Generate: %d, want 403", status)
	}
	if n, w := s.GenerationsInFlight(); n != 0 || w != 0 {
		t.Errorf("afterwards: %d slots held, %d waiting", n, w)
	}
}

// holdingGenerator holds every Generate for subject CN=hold until release
// is closed; the others go straight through.
type holdingGenerator struct {
	api.Generator
	entered chan struct{}
	release chan struct{}
}

func (g *holdingGenerator) Generate(ctx context.Context, req lifecycle.GenerateRequest) (*lifecycle.GenerateResult, error) {
	if req.Subject == "CN=hold" {
		g.entered <- struct{}{}
		<-g.release
	}
	return g.Generator.Generate(ctx, req)
}

// TestGenerationsPerIdentity: with limits.max_generations_per_identity 1,
// an identity with a generation in flight is answered 429 with Retry-After
// at once for the next (in any spelling of its name), with slots to spare
// and nothing created, while another identity is served; once the first
// ends, it may generate again.
func TestGenerationsPerIdentity(t *testing.T) {
	users := map[string]auth.Grants{
		"svc":   {Operations: []auth.Operation{auth.OpGenerate}},
		"other": {Operations: []auth.Operation{auth.OpGenerate}},
	}
	gen := &holdingGenerator{entered: make(chan struct{}, 1), release: make(chan struct{})}
	// A wait of an hour: a request that queued for a slot would hang.
	s, db, svc := authedServer(t, users, api.Options{Generator: gen, MaxGenerations: 4, MaxGenerationsPerIdentity: 1, GenerationWait: time.Hour})
	gen.Generator = svc
	body := func(cn string) io.Reader {
		return strings.NewReader(`{"Subject":"CN=` + cn + `","KeyType":"ECC","KeyLength":256}`)
	}
	first := make(chan int, 1)
	go func() {
		status, _, _ := serve(s, "svc", body("hold"))
		first <- status
	}()
	<-gen.entered
	before, _ := db.CountByState(context.Background())
	for _, name := range []string{"svc", "SVC"} {
		status, hdr, eb := serve(s, name, body("second"))
		if status != http.StatusTooManyRequests || eb.ErrorCode != api.CodeIdentityBusy || hdr.Get("Retry-After") != "1" {
			t.Errorf("%s's second Generate: %d %+v Retry-After=%q; want 429 %s with Retry-After 1", name, status, eb, hdr.Get("Retry-After"), api.CodeIdentityBusy)
		}
	}
	if after, _ := db.CountByState(context.Background()); mustJSON(t, before) != mustJSON(t, after) {
		t.Errorf("refused Generates changed the records: %v -> %v", before, after)
	}
	if status, _, eb := serve(s, "other", body("other")); status != http.StatusOK {
		t.Errorf("another identity meanwhile: %d %+v", status, eb)
	}
	close(gen.release)
	if status := <-first; status != http.StatusOK {
		t.Errorf("the held Generate: %d", status)
	}
	if status, _, eb := serve(s, "svc", body("again")); status != http.StatusOK {
		t.Errorf("svc after its generation ended: %d %+v", status, eb)
	}
	if n, w := s.GenerationsInFlight(); n != 0 || w != 0 {
		t.Errorf("afterwards: %d slots held, %d waiting", n, w)
	}
}
