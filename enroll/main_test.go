package enroll_test

import (
	"context"
	"crypto"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/enroll"
	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

var (
	testToken *hsm.Token
	testLog   = zerolog.New(os.Stderr).Level(zerolog.ErrorLevel)
)

func TestMain(m *testing.M) {
	os.Exit(fixture.Main(m, "enroll", []string{"csrd-enroll-test"}, func(s *fixture.Suite) (err error) {
		testToken, err = hsm.Open(context.Background(), hsm.Config{
			Module: s.Token.Module, TokenLabel: s.Token.Label, PIN: s.Token.PIN, MaxSessions: 8, PoolWaitTimeout: time.Minute,
		}, testLog)
		if err == nil {
			s.Defer(func() { testToken.Close() })
		}
		return err
	}))
}

// switchable is the policy, refusing every request while refuse is set.
type switchable struct{ refuse atomic.Bool }

func (p *switchable) Decide(req policy.Request) (*policy.Decision, error) {
	if p.refuse.Load() {
		return nil, &policy.Error{Violations: []policy.Violation{{Rule: "test", Field: "Subject", Reason: "renewals are refused by this test"}}}
	}
	return policy.Default().Decide(req)
}

// refusable is the test token, whose key generations it refuses while
// refuse is set, as tpm2-pkcs11 refuses a template it cannot map
// (CKR_GENERAL_ERROR while it otherwise answers: hsm.ErrRefused).
type refusable struct {
	lifecycle.HSMToken
	refuse atomic.Bool
}

func (r *refusable) GenerateKeyPair(ctx context.Context, spec hsm.KeySpec, ref hsm.KeyRef) (crypto.Signer, error) {
	if r.refuse.Load() {
		return nil, &hsm.Error{Op: "generate key pair", Token: r.Label(), CKR: 0x5, Err: hsm.ErrRefused}
	}
	return r.HSMToken.GenerateKeyPair(ctx, spec, ref)
}

// env is one csrd's worth of enrollment: a database, the lifecycle on
// the test token, and an enroll.Service for the CAs given.
type env struct {
	db     *store.Store
	keys   *lifecycle.Service
	policy *switchable
	token  *refusable
	dir    string
}

func newFixture(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(context.Background(), filepath.Join(dir, "csrd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	pol, tok := &switchable{}, &refusable{HSMToken: lifecycle.HSMToken{Token: testToken}}
	return &env{db: db, keys: lifecycle.New(tok, db, pol, testLog), policy: pol, token: tok, dir: dir}
}

func (f *env) service(t *testing.T, wait time.Duration, cas ...config.CA) *enroll.Service {
	t.Helper()
	s, err := enroll.New(enroll.Options{CAs: cas, Records: f.db, Keys: f.keys, Token: lifecycle.HSMToken{Token: testToken}, Log: testLog,
		Wait: wait, CertDir: filepath.Join(f.dir, "certs"), RetryBase: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runLoop runs s's background loop until the test ends.
func runLoop(t *testing.T, s *enroll.Service) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// generate makes a pending key whose CSR names names (DNS).
func (f *env) generate(t *testing.T, names ...string) *lifecycle.GenerateResult {
	t.Helper()
	res, err := f.keys.Generate(context.Background(), lifecycle.GenerateRequest{
		Subject: "CN=" + names[0] + ",O=csrd enroll test", Key: policy.KeyRequest{KeyType: "ECC", KeyLength: 256},
		SANs: map[string][]string{"dns": names},
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// pebbleCA is a cas: entry for p, its chain roots written to a file.
func pebbleCA(t *testing.T, p *fixture.Pebble, name string) config.CA {
	t.Helper()
	roots := filepath.Join(t.TempDir(), "chain-roots.pem")
	if err := os.WriteFile(roots, p.ChainRoots(t), 0o600); err != nil {
		t.Fatal(err)
	}
	zero := time.Duration(0)
	return config.CA{Name: name, RetireAfterExpiry: &zero, ACME: config.ACME{
		Directory: p.Directory, RootsFile: p.RootsFile, ChainRootsFile: roots, Contact: []string{"mailto:pki@example.test"},
	}}
}

func eabFile(t *testing.T, key []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "eab")
	if err := os.WriteFile(p, []byte(base64.RawURLEncoding.EncodeToString(key)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func requireServers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Pebble")
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
