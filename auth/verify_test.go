package auth

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// gatedCheck replaces an Authenticator's password check with one that
// counts calls and holds each until the test opens the gate, so
// verifications stay in flight for as long as the test needs.
type gatedCheck struct {
	calls  atomic.Int64
	gate   chan struct{}
	hashes chan string
}

func gate(a *Authenticator) *gatedCheck {
	g := &gatedCheck{gate: make(chan struct{}), hashes: make(chan string, 100)}
	a.check = func(hash, password string) (bool, error) {
		g.calls.Add(1)
		g.hashes <- hash
		<-g.gate
		return VerifyPassword(hash, password)
	}
	return g
}

// openFile writes f and opens it with o.
func openFile(t *testing.T, f *File, o Options) *Authenticator {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth.yaml")
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	a, err := Open(path, zerolog.Nop(), o)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func oneUser(t *testing.T) *File {
	h, _ := HashPassword("right password", cheap)
	return &File{Users: []User{{Name: "alice", PasswordHash: h, Grants: Grants{Operations: []Operation{OpGenerate}}}}}
}

// waitFor polls cond; it synchronises with goroutines, it asserts no time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Of 40 parallel wrong guesses from one source, at most failure_limit are
// verified: the attempt is reserved before the verification and counts
// while it runs. The rest are refused at once.
func TestParallelGuessesReserveBeforeVerifying(t *testing.T) {
	const limit, n = 5, 40
	a := openFile(t, oneUser(t), Options{Throttle: NewThrottle(limit, time.Minute), VerifyQueue: n, VerifyPerSource: n})
	g := gate(a)
	var throttled atomic.Int64
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := a.Basic(context.Background(), testSrc, "alice", "guess")
			if errors.Is(err, ErrThrottled) {
				throttled.Add(1)
			}
			errs <- err
		}()
	}
	// Every guess that is not verified is answered while the verified
	// ones are still held.
	waitFor(t, "the refusals", func() bool { return throttled.Load() == n-limit })
	close(g.gate)
	unauth := 0
	for range n {
		if err := <-errs; errors.Is(err, ErrUnauthenticated) {
			unauth++
		}
	}
	if g.calls.Load() != limit || unauth != limit {
		t.Fatalf("%d verifications, %d × unauthenticated; want %d", g.calls.Load(), unauth, limit)
	}
	if _, err := a.Basic(context.Background(), testSrc, "alice", "right password"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("after %d failures: %v, want locked out", limit, err)
	}
}

// The verifier's queue is bounded and one source may hold only its share:
// what does not fit is refused at once (ErrBusy, or ErrThrottled for the
// source over its share), never queued behind the flood.
func TestVerifierRefusesAtOnceWhenFull(t *testing.T) {
	a := openFile(t, oneUser(t), Options{VerifyQueue: 2, VerifyPerSource: 1})
	g := gate(a)
	done := make(chan error, 8)
	for _, src := range []string{"s1", "s2", "s3", "s4"} {
		go func() {
			_, err := a.Basic(context.Background(), src, "alice", "guess")
			done <- err
		}()
	}
	waitFor(t, "two running and two waiting", func() bool {
		r, w := a.verifier.load()
		return r == DefaultVerifySlots && w == 2
	})
	answer := func(src string) error {
		go func() {
			_, err := a.Basic(context.Background(), src, "alice", "guess")
			done <- err
		}()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no answer while the verifier is full; it must refuse at once", src)
			return nil
		}
	}
	if err := answer("s5"); !errors.Is(err, ErrBusy) {
		t.Errorf("new source with the queue full: %v, want ErrBusy", err)
	}
	if err := answer("s1"); !errors.Is(err, ErrThrottled) {
		t.Errorf("source over its share: %v, want ErrThrottled", err)
	}
	close(g.gate)
	for range 4 {
		if err := <-done; !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("held guess: %v", err)
		}
	}
	if r, w := a.verifier.load(); r != 0 || w != 0 {
		t.Errorf("after the flood: %d running, %d waiting", r, w)
	}
}

// A request that gives up while waiting leaves the queue and frees its
// source's share.
func TestVerifierWaiterCancelled(t *testing.T) {
	a := openFile(t, oneUser(t), Options{VerifyQueue: 4, VerifyPerSource: 1})
	g := gate(a)
	held := make(chan error, 2)
	for _, src := range []string{"s1", "s2"} {
		go func() { _, err := a.Basic(context.Background(), src, "alice", "guess"); held <- err }()
	}
	waitFor(t, "both slots", func() bool { r, _ := a.verifier.load(); return r == 2 })
	ctx, cancel := context.WithCancel(context.Background())
	waiter := make(chan error, 1)
	go func() { _, err := a.Basic(ctx, "s3", "alice", "guess"); waiter <- err }()
	waitFor(t, "the waiter", func() bool { _, w := a.verifier.load(); return w == 1 })
	cancel()
	if err := <-waiter; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	if _, w := a.verifier.load(); w != 0 {
		t.Fatalf("%d still waiting after the cancel", w)
	}
	close(g.gate)
	for range 2 {
		if err := <-held; !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("held guess: %v", err)
		}
	}
	if _, err := a.Basic(context.Background(), "s3", "alice", "right password"); err != nil {
		t.Fatalf("s3 after its cancelled wait: %v", err)
	}
}

// Strong credentials get through a locked-out source: a verified client
// certificate and a valid API token cannot be guessed. Wrong ones, and
// passwords, are refused without being counted.
func TestLockedSourceLetsStrongCredentialsThrough(t *testing.T) {
	tok, id, sha, _ := NewToken()
	leaf := &x509.Certificate{Raw: []byte("client der"), Subject: pkix.Name{CommonName: "ra01"}}
	f := oneUser(t)
	f.Tokens = []Token{{Name: "ci", ID: id, SHA256: sha, Grants: Grants{Operations: []Operation{OpGenerate}}}}
	f.Clients = []Client{{Name: "ra01", SubjectCN: "ra01", Grants: Grants{Operations: []Operation{OpGenerate}}}}
	th := NewThrottle(2, time.Minute)
	a := openFile(t, f, Options{Throttle: th})
	ctx := context.Background()
	for range 2 {
		if _, err := a.Basic(ctx, testSrc, "alice", "guess"); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("wrong password: %v, want ErrUnauthenticated", err)
		}
	}
	if _, locked := th.Locked(testSrc); !locked {
		t.Fatal("source not locked after two failures")
	}
	if id, err := a.Certificate(ctx, testSrc, leaf); err != nil || id.Name != "ra01" {
		t.Errorf("listed certificate from a locked source: %+v %v", id, err)
	}
	if id, err := a.Bearer(ctx, testSrc, tok); err != nil || id.Name != "ci" {
		t.Errorf("valid token from a locked source: %+v %v", id, err)
	}
	other := &x509.Certificate{Raw: []byte("other")}
	refused := []struct {
		name string
		try  func() error
	}{
		{"password", func() error { _, err := a.Basic(ctx, testSrc, "alice", "right password"); return err }},
		{"wrong token", func() error { _, err := a.Bearer(ctx, testSrc, tok+"x"); return err }},
		{"unlisted certificate", func() error { _, err := a.Certificate(ctx, testSrc, other); return err }},
		{"garbage", func() error { return a.Malformed(testSrc) }},
	}
	for _, r := range refused {
		if err := r.try(); !errors.Is(err, ErrThrottled) {
			t.Errorf("%s from a locked source: %v, want ErrThrottled", r.name, err)
		}
	}
}

// Wrong tokens and unlisted certificates count like wrong passwords, and
// in-flight reservations keep their count exact under concurrency.
func TestWrongTokensAreThrottled(t *testing.T) {
	th := NewThrottle(3, time.Minute)
	a := openFile(t, oneUser(t), Options{Throttle: th})
	tok, _, _, _ := NewToken()
	var wg sync.WaitGroup
	var unauth atomic.Int64
	for range 20 {
		wg.Go(func() {
			if _, err := a.Bearer(context.Background(), testSrc, tok); errors.Is(err, ErrUnauthenticated) {
				unauth.Add(1)
			}
		})
	}
	wg.Wait()
	if unauth.Load() != 3 {
		t.Fatalf("%d wrong tokens answered unauthenticated, want 3 (the rest throttled)", unauth.Load())
	}
}
