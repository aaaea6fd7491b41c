package lifecycle_test

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

var errNoToken = &hsm.Error{Op: "open", Err: hsm.ErrTokenNotFound}

// withheldPool is a pool of tokens that all start withheld, as csrd's does,
// and a Service on a fresh database.
func withheldPool(t *testing.T, toks ...*fakeToken) (*lifecycle.TokenPool, *lifecycle.Service, *store.Store) {
	t.Helper()
	members := make([]lifecycle.Token, len(toks))
	for i, tok := range toks {
		members[i] = tok
	}
	pool, err := lifecycle.NewTokenPool(testLog, members...)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		pool.Withhold(m)
	}
	db := openStore(t, filepath.Join(t.TempDir(), "csrd.db"))
	return pool, lifecycle.NewPooled(pool, db, policy.Default(), testLog), db
}

// interrupted leaves what a crash inside Generate leaves on tok: a record
// still generating and its key pair.
func interrupted(t *testing.T, db *store.Store, tok *fakeToken) int64 {
	t.Helper()
	keyID := []byte("interrupted-" + tok.label)
	id, err := db.BeginKey(context.Background(), &store.KeyRecord{
		KeyID: keyID, TokenLabel: tok.label, TokenSerial: tok.Serial(), KeyType: "ECC", Curve: "P-256",
	}, lifecycle.LabelPrefix)
	if err != nil {
		t.Fatal(err)
	}
	tok.put(hsm.KeyRef{ID: keyID, Label: lifecycle.Label(id)}, hsm.ClassPrivateKey, hsm.ClassPublicKey)
	return id
}

func labels(toks []lifecycle.Token) []string {
	var out []string
	for _, t := range toks {
		out = append(out, t.Label())
	}
	return out
}

// TestAdmitConnected: start-up admits every connected token once its
// records are reconciled; a token not connected, or lost while being
// reconciled, waits; any other failure stops start-up.
func TestAdmitConnected(t *testing.T) {
	tests := []struct {
		name     string
		b        func() *fakeToken
		inject   func(b *fakeToken)
		wantErr  bool
		waiting  []string
		admitted []string
	}{{
		name:     "every token connected",
		b:        func() *fakeToken { return newFakeToken("fake-b") },
		admitted: []string{"fake-a", "fake-b"},
	}, {
		name:     "a token not connected yet waits",
		b:        func() *fakeToken { return newWaitingToken("fake-b", errNoToken) },
		waiting:  []string{"fake-b"},
		admitted: []string{"fake-a"},
	}, {
		name:     "a token lost during reconciliation waits",
		b:        func() *fakeToken { return newFakeToken("fake-b") },
		inject:   func(b *fakeToken) { b.fail(opListObjects, tokenErr(opListObjects)) },
		waiting:  []string{"fake-b"},
		admitted: []string{"fake-a"},
	}, {
		name:    "a token that cannot be reconciled stops start-up",
		b:       func() *fakeToken { return newFakeToken("fake-b") },
		inject:  func(b *fakeToken) { b.fail(opListObjects, errors.New("listing garbled")) },
		wantErr: true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			a, b := newFakeToken("fake-a"), tt.b()
			pool, svc, db := withheldPool(t, a, b)
			id := interrupted(t, db, a)
			if tt.inject != nil {
				tt.inject(b)
			}
			waiting, err := svc.AdmitConnected(ctx)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), `token "fake-b"`) {
					t.Fatalf("AdmitConnected: %v, want an error naming fake-b", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := labels(waiting); !slices.Equal(got, tt.waiting) {
				t.Errorf("waiting %v, want %v", got, tt.waiting)
			}
			var admitted []string
			for _, tok := range pool.Tokens() {
				if pool.Admitted(tok) {
					admitted = append(admitted, tok.Label())
				}
			}
			if !slices.Equal(admitted, tt.admitted) {
				t.Errorf("admitted %v, want %v", admitted, tt.admitted)
			}
			// Admitted means reconciled: the crash's key is gone and its
			// record failed.
			rec, err := db.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if rec.State != store.StateFailed || len(a.groups()) != 0 {
				t.Errorf("interrupted record %s with %d key pairs left on %s, want failed and none", rec.State, len(a.groups()), a.label)
			}
		})
	}
}

// TestAdmitLate: a token csrd started without is admitted once it connects
// and its reconciliation succeeds (retried after a failure), and not
// before; the callback says when the last one is in.
func TestAdmitLate(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := newFakeToken("fake-a"), newWaitingToken("fake-b", errNoToken)
	pool, svc, _ := withheldPool(t, a, b)
	waiting, err := svc.AdmitConnected(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b.fail(opListObjects, tokenErr(opListObjects)) // its first reconciliation fails
	type admission struct {
		label string
		left  int
	}
	admitted := make(chan admission, 1)
	svc.AdmitLate(ctx, waiting, time.Second, func(tok lifecycle.Token, left int) {
		admitted <- admission{tok.Label(), left}
	})
	select {
	case got := <-admitted:
		t.Fatalf("%s admitted before it connected", got.label)
	case <-time.After(50 * time.Millisecond):
	}
	if pool.Admitted(b) {
		t.Fatal("fake-b admitted before it connected")
	}
	b.connect()
	select {
	case got := <-admitted:
		if got != (admission{"fake-b", 0}) {
			t.Errorf("admitted %+v, want fake-b with none left", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("fake-b not admitted after it connected")
	}
	if !pool.Admitted(b) {
		t.Error("fake-b not in the pool after its admission")
	}
	if st := pool.States(); st["fake-b"] != lifecycle.StateOK {
		t.Errorf("states %v after admission", st)
	}
}

// TestAdmitLateStopsWithContext: the wait for a token ends with the
// context; a token that connects after that is not admitted behind csrd's
// back.
func TestAdmitLateStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	b := newWaitingToken("fake-b", errNoToken)
	pool, svc, _ := withheldPool(t, b)
	called := make(chan struct{}, 1)
	svc.AdmitLate(ctx, []lifecycle.Token{b}, time.Second, func(lifecycle.Token, int) { called <- struct{}{} })
	cancel()
	time.Sleep(50 * time.Millisecond) // the waiting goroutine sees ctx end
	b.connect()
	select {
	case <-called:
		t.Fatal("fake-b admitted after the context ended")
	case <-time.After(100 * time.Millisecond):
	}
	if pool.Admitted(b) {
		t.Error("fake-b in the pool after the context ended")
	}
}

// TestReadiness: the token states for /readyz and STATUS=, and the HSM
// readiness check, which passes while one admitted token answers.
func TestReadiness(t *testing.T) {
	tests := []struct {
		name    string
		a, b    func() *fakeToken
		admit   []string // of the two, the ones admitted
		inject  func(a, b *fakeToken)
		states  map[string]string
		waiting string
		pingErr string // "" for none
	}{{
		name:    "both admitted and answering",
		a:       func() *fakeToken { return newFakeToken("fake-a") },
		b:       func() *fakeToken { return newFakeToken("fake-b") },
		admit:   []string{"fake-a", "fake-b"},
		states:  map[string]string{"fake-a": "ok", "fake-b": "ok"},
		waiting: "",
	}, {
		name:    "one connected and still being reconciled",
		a:       func() *fakeToken { return newFakeToken("fake-a") },
		b:       func() *fakeToken { return newFakeToken("fake-b") },
		admit:   []string{"fake-a"},
		states:  map[string]string{"fake-a": "ok", "fake-b": "connected; reconciling before it takes new keys"},
		waiting: `token "fake-b": connected; reconciling before it takes new keys`,
	}, {
		name:    "one not connected",
		a:       func() *fakeToken { return newFakeToken("fake-a") },
		b:       func() *fakeToken { return newWaitingToken("fake-b", errNoToken) },
		admit:   []string{"fake-a"},
		states:  map[string]string{"fake-a": "ok", "fake-b": "no token with this label found"},
		waiting: `token "fake-b": no token with this label found`,
	}, {
		name:    "the admitted one does not answer",
		a:       func() *fakeToken { return newFakeToken("fake-a") },
		b:       func() *fakeToken { return newWaitingToken("fake-b", errNoToken) },
		admit:   []string{"fake-a"},
		inject:  func(a, _ *fakeToken) { a.fail(opPing, tokenErr(opPing)) },
		states:  map[string]string{"fake-a": "ok", "fake-b": "no token with this label found"},
		waiting: `token "fake-b": no token with this label found`,
		pingErr: `token "fake-b" not admitted yet: no token with this label found`,
	}, {
		name:    "none admitted",
		a:       func() *fakeToken { return newFakeToken("fake-a") },
		b:       func() *fakeToken { return newFakeToken("fake-b") },
		states:  map[string]string{"fake-a": "connected; reconciling before it takes new keys", "fake-b": "connected; reconciling before it takes new keys"},
		waiting: `token "fake-a": connected; reconciling before it takes new keys; token "fake-b": connected; reconciling before it takes new keys`,
		pingErr: `token "fake-a" not admitted yet: ok`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			a, b := tt.a(), tt.b()
			pool, svc, _ := withheldPool(t, a, b)
			for _, tok := range []*fakeToken{a, b} {
				if slices.Contains(tt.admit, tok.label) {
					if _, err := svc.Admit(ctx, tok); err != nil {
						t.Fatal(err)
					}
				}
			}
			if tt.inject != nil {
				tt.inject(a, b)
			}
			states := pool.States()
			if !maps.Equal(states, tt.states) {
				t.Errorf("states %v, want %v", states, tt.states)
			}
			if got := lifecycle.WaitingFor(states); got != tt.waiting {
				t.Errorf("waiting for %q, want %q", got, tt.waiting)
			}
			err := pool.Ping(ctx)
			switch {
			case tt.pingErr == "" && err != nil:
				t.Errorf("ping: %v, want ready", err)
			case tt.pingErr != "" && (err == nil || !strings.Contains(err.Error(), tt.pingErr)):
				t.Errorf("ping: %v, want an error containing %q", err, tt.pingErr)
			}
		})
	}
}
