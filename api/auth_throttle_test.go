package api_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/auth"
	"github.com/csrd/csrd/store"
)

const statusPath = "/KeyfactorAPI/Status/Endpoints"

// A valid low-privilege credential does not reset the failures of another
// identity: four guesses at svc-enroll's password and one valid request as
// alice, repeated, are locked out at the fifth guess (failure_limit 5).
func TestSuccessForgivesOnlyItsIdentity(t *testing.T) {
	fx := newAuthFixture(t, 5)
	guesses := 0
	for range 5 {
		for range 4 {
			resp, eb := fx.do(t, nil, call{method: "GET", path: statusPath, authz: basic("svc-enroll", "guess")})
			if resp.StatusCode == http.StatusTooManyRequests {
				if guesses != 5 || eb.ErrorCode != api.CodeThrottled || resp.Header.Get("Retry-After") != "60" {
					t.Fatalf("429 after %d guesses (%s, Retry-After %q), want after 5 with Retry-After 60",
						guesses, eb.ErrorCode, resp.Header.Get("Retry-After"))
				}
				return
			}
			guesses++
		}
		fx.do(t, nil, call{method: "GET", path: statusPath, authz: basic("alice", alicePass)})
	}
	t.Fatalf("%d wrong guesses, interleaved with valid requests as another user, and never a 429", guesses)
}

// Guesses at one identity from several addresses: once it has had
// failure_limit failures, each further address that guesses at it is
// locked out at its first failure, while an address that never failed
// still logs in as that user.
func TestGuessesAtOneIdentityLockTheirSources(t *testing.T) {
	fx := newAuthFixtureWith(t, fixtureOptions{failureLimit: 3, proxied: true})
	from := func(src, authz string) (int, string) {
		resp, _ := fx.do(t, nil, call{method: "GET", path: statusPath, authz: authz, hdr: map[string]string{"X-Forwarded-For": src}})
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	for _, src := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"} {
		if got, _ := from(src, basic("svc-enroll", "guess")); got != http.StatusUnauthorized {
			t.Fatalf("first guess from %s: %d", src, got)
		}
	}
	if got, retry := from("198.51.100.4", basic("svc-enroll", enrollPass)); got != http.StatusTooManyRequests || retry != "60" {
		t.Errorf("an address that guessed at an identity under attack: %d Retry-After %q, want 429 and 60", got, retry)
	}
	if got, _ := from("198.51.100.1", basic("svc-enroll", enrollPass)); got != http.StatusOK {
		t.Errorf("an address with one failure before the attack: %d, want 200", got)
	}
	if got, _ := from("203.0.113.7", basic("svc-enroll", enrollPass)); got != http.StatusOK {
		t.Errorf("the owner from an address that never failed: %d, want 200", got)
	}
}

// Of 40 parallel wrong guesses from one address with failure_limit 5,
// exactly 5 are verified (401, one audit row each); the other 35 are
// answered 429 without being looked at or audited. The verifier would let
// all 40 through; the throttle's reservation is what bounds them, however
// long a verification takes (a costlier hash here, so that a check made
// only before verifying would visibly let them all in).
func TestParallelGuessesBounded(t *testing.T) {
	const limit, n = 5, 40
	slow, err := auth.HashPassword("slow-password-123", auth.Argon2Params{Memory: 8 * 1024, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	fx := newAuthFixtureWith(t, fixtureOptions{failureLimit: limit, verify: auth.Options{VerifyQueue: n, VerifyPerSource: n},
		users: []auth.User{{Name: "slow", PasswordHash: slow, Grants: auth.Grants{Operations: []auth.Operation{auth.OpGenerate}}}}})
	ctx := context.Background()
	before, err := testStore.VerifyAudit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	statuses := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		cl := fx.client(nil)
		wg.Go(func() {
			<-start
			resp, _ := fx.do(t, cl, call{method: "GET", path: statusPath, authz: basic("slow", "guess")})
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	if statuses[http.StatusUnauthorized] != limit || statuses[http.StatusTooManyRequests] != n-limit {
		t.Errorf("statuses %v, want %d × 401 and %d × 429", statuses, limit, n-limit)
	}
	rows, err := testStore.ListAudit(ctx, before.LastID, 1000)
	if err != nil {
		t.Fatal(err)
	}
	unauth := 0
	for _, r := range rows {
		if r.Result == store.AuditUnauthenticated && r.Actor == "slow" {
			unauth++
		}
	}
	if unauth != limit {
		t.Errorf("%d unauthenticated audit rows, want %d", unauth, limit)
	}
}

// A locked-out address still lets strong credentials through: a verified
// client certificate and a valid API token cannot be guessed. Passwords,
// wrong tokens and unlisted certificates from it are answered 429.
func TestLockedSourceLetsStrongCredentialsThrough(t *testing.T) {
	fx := newAuthFixture(t, 2)
	ra01 := fx.clientCert(t, "ra01.example.com")
	stranger := fx.clientCert(t, "stranger.example.com")
	for range 2 {
		fx.do(t, nil, call{method: "GET", path: statusPath, authz: basic("alice", "guess")})
	}
	tests := []struct {
		name string
		cert *tls.Certificate
		c    call
		want int
	}{
		{"listed certificate", &ra01, call{method: "GET", path: statusPath}, http.StatusOK},
		{"pinned certificate", &fx.pinned, call{method: "GET", path: statusPath}, http.StatusOK},
		{"valid token", nil, call{method: "GET", path: statusPath, authz: "Bearer " + fx.token}, http.StatusOK},
		{"right password", nil, call{method: "GET", path: statusPath, authz: basic("alice", alicePass)}, http.StatusTooManyRequests},
		{"wrong token", nil, call{method: "GET", path: statusPath, authz: "Bearer " + alter(fx.token)}, http.StatusTooManyRequests},
		{"unlisted certificate", &stranger, call{method: "GET", path: statusPath}, http.StatusTooManyRequests},
		{"malformed", nil, call{method: "GET", path: statusPath, authz: "Basic !!!"}, http.StatusTooManyRequests},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if resp, eb := fx.do(t, fx.client(tt.cert), tt.c); resp.StatusCode != tt.want {
				t.Errorf("got %d %+v, want %d", resp.StatusCode, eb, tt.want)
			}
		})
	}
}

// refusingAuth answers every credential with one error, to show how the
// API answers the authenticator's refusals.
type refusingAuth struct{ err error }

func (r refusingAuth) Basic(context.Context, string, string, string) (auth.Identity, error) {
	return auth.Identity{}, r.err
}
func (r refusingAuth) Bearer(context.Context, string, string) (auth.Identity, error) {
	return auth.Identity{}, r.err
}
func (r refusingAuth) Certificate(context.Context, string, *x509.Certificate) (auth.Identity, error) {
	return auth.Identity{}, r.err
}
func (r refusingAuth) Malformed(string) error { return r.err }

// A full verification queue is a 503 with Retry-After, an address over its
// share of verifications a 429 with Retry-After; neither writes an audit
// row (anyone could flood the table with them).
func TestAuthRefusalsAnswered(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		err   error
		want  int
		code  string
		retry string
	}{
		{auth.ErrBusy, http.StatusServiceUnavailable, api.CodeAuthBusy, "5"},
		{&auth.ThrottledError{RetryAfter: time.Second}, http.StatusTooManyRequests, api.CodeThrottled, "1"},
		{&auth.ThrottledError{RetryAfter: 90 * time.Second, Locked: true}, http.StatusTooManyRequests, api.CodeThrottled, "90"},
	} {
		t.Run(tt.code, func(t *testing.T) {
			srv := httptest.NewServer(api.New(api.Options{BasePath: "/KeyfactorAPI", Log: testLog, Generator: testSvc,
				Auth: refusingAuth{tt.err}, Audit: testStore}))
			defer srv.Close()
			before, err := testStore.VerifyAudit(ctx)
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest("POST", srv.URL+generatePath, strings.NewReader(genBody("")))
			req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", basic("alice", "x"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var eb api.ErrorBody
			_ = json.NewDecoder(resp.Body).Decode(&eb)
			resp.Body.Close()
			if resp.StatusCode != tt.want || eb.ErrorCode != tt.code || resp.Header.Get("Retry-After") != tt.retry {
				t.Errorf("got %d %s Retry-After %q, want %d %s and %s", resp.StatusCode, eb.ErrorCode,
					resp.Header.Get("Retry-After"), tt.want, tt.code, tt.retry)
			}
			if rows, err := testStore.ListAudit(ctx, before.LastID, 10); err != nil || len(rows) != 0 {
				t.Errorf("audit rows %+v, %v; want none", rows, err)
			}
		})
	}
}
