package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

func openStore(t testing.TB, path string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var p256 = lifecycle.GenerateRequest{
	Subject: "CN=crash.example.com",
	Key:     policy.KeyRequest{KeyType: "ECC", KeyLength: 256},
}

// hybrid is an Ed25519 key (raw PKCS#11 path) with a sealed ML-DSA-65
// alternative (SoftHSM 2.6.1 has no ML-DSA).
var hybrid = lifecycle.GenerateRequest{
	Subject: "CN=hybrid.example.com",
	SANs:    map[string][]string{"dns": {"hybrid.example.com"}},
	Key:     policy.KeyRequest{KeyType: "ED25519", AlternativeKeyType: "ML-DSA-65"},
}

var crashRequests = map[string]lifecycle.GenerateRequest{"p256": p256, "hybrid": hybrid}

// ensureKEK makes the token's sealing key exist, so that object counts
// before and after a hybrid Generate compare key pairs only.
func ensureKEK(t *testing.T) {
	t.Helper()
	k, err := testToken.NewSealedMLDSA(context.Background(), hsm.MLDSA44, hsm.SealBinding{RecordID: 1, Label: "warm-up"})
	if err != nil {
		t.Fatal(err)
	}
	k.Wipe()
}

// TestCrashBetweenSteps kills a real process (SIGKILL, no clean-up code
// runs) after each step of Generate, then proves that start-up
// reconciliation leaves neither an unrecorded key in the token nor a record
// that claims a key: interrupted records end "failed" with their key gone,
// a completed one stays "pending" with its key.
func TestCrashBetweenSteps(t *testing.T) {
	ensureKEK(t)
	cases := []struct {
		req         string
		step        string
		keyExists   bool // the token holds the key when the process dies
		wantState   store.State
		wantDestroy int
	}{
		{req: "p256", step: "recorded", keyExists: false, wantState: store.StateFailed, wantDestroy: 0},
		{req: "p256", step: "key-generated", keyExists: true, wantState: store.StateFailed, wantDestroy: 1},
		{req: "p256", step: "csr-built", keyExists: true, wantState: store.StateFailed, wantDestroy: 1},
		{req: "p256", step: "completed", keyExists: true, wantState: store.StatePending, wantDestroy: 0},
		{req: "hybrid", step: "recorded", keyExists: false, wantState: store.StateFailed, wantDestroy: 0},
		{req: "hybrid", step: "key-generated", keyExists: true, wantState: store.StateFailed, wantDestroy: 1},
		{req: "hybrid", step: "alt-generated", keyExists: true, wantState: store.StateFailed, wantDestroy: 1},
		{req: "hybrid", step: "csr-built", keyExists: true, wantState: store.StateFailed, wantDestroy: 1},
		{req: "hybrid", step: "completed", keyExists: true, wantState: store.StatePending, wantDestroy: 0},
	}
	for _, tc := range cases {
		t.Run(tc.req+"/"+tc.step, func(t *testing.T) {
			ctx := context.Background()
			dbPath := filepath.Join(t.TempDir(), "csrd.db")
			objectsBefore, err := testToken.CountObjects(ctx)
			if err != nil {
				t.Fatal(err)
			}

			runCrashChild(t, tc.step, dbPath, envCrashReq+"="+tc.req)

			db := openStore(t, dbPath)
			recs, err := db.ListByState(ctx, store.StateGenerating)
			if err != nil {
				t.Fatal(err)
			}
			var rec *store.KeyRecord
			if tc.step == "completed" {
				if len(recs) != 0 {
					t.Fatalf("%d records left generating after a completed generate", len(recs))
				}
				pend, _ := db.ListByState(ctx, store.StatePending)
				if len(pend) != 1 {
					t.Fatalf("want 1 pending record, have %d", len(pend))
				}
				rec = pend[0]
			} else {
				if len(recs) != 1 {
					t.Fatalf("want the interrupted record left generating, have %d", len(recs))
				}
				rec = recs[0]
			}
			ref := hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}
			_, err = testToken.FindKey(ctx, ref)
			if tc.keyExists != (err == nil) {
				t.Fatalf("key in token after crash at %s: %v (want present=%v)", tc.step, err, tc.keyExists)
			}

			svc := lifecycle.New(lifecycle.HSMToken{Token: testToken}, db, policy.Default(), testLog)
			rep, err := svc.Reconcile(ctx, lifecycle.ReconcileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.KeysDestroyed != tc.wantDestroy {
				t.Errorf("reconcile destroyed %d keys, want %d", rep.KeysDestroyed, tc.wantDestroy)
			}
			got, err := db.Get(ctx, rec.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != tc.wantState {
				t.Errorf("record state %s after reconcile, want %s", got.State, tc.wantState)
			}
			_, err = testToken.FindKey(ctx, ref)
			if keep := tc.wantState == store.StatePending; keep != (err == nil) {
				t.Errorf("after reconcile key present=%v (err %v), want %v", err == nil, err, keep)
			}
			if !errors.Is(err, hsm.ErrNotFound) && err != nil {
				t.Errorf("lookup error: %v", err)
			}
			// Clean up the completed key so object counts stay comparable.
			if tc.wantState == store.StatePending {
				if err := testToken.DestroyKey(ctx, ref); err != nil {
					t.Fatal(err)
				}
			}
			if after, _ := testToken.CountObjects(ctx); after != objectsBefore {
				t.Errorf("token objects %d before, %d after", objectsBefore, after)
			}
			// A hybrid record names its sealed alternative key from the start;
			// the seal itself exists only once the record is pending.
			if tc.req == "hybrid" {
				if got.AltKeyStorage != store.AltStorageSealed || got.AltKeyType != "ML-DSA-65" {
					t.Errorf("alternative key recorded as %q %q", got.AltKeyStorage, got.AltKeyType)
				}
				if hasSeal := len(got.AltSealedSeed) > 0; hasSeal != (tc.wantState == store.StatePending) {
					t.Errorf("sealed seed present=%v in a %s record", hasSeal, got.State)
				}
			}
			// A second reconcile has nothing left to do.
			if rep, err := svc.Reconcile(ctx, lifecycle.ReconcileOptions{}); err != nil || rep.Interrupted != 0 {
				t.Errorf("second reconcile: %+v %v", rep, err)
			}
		})
	}
}

// crashChild runs in the child process started by the crash tests (see
// TestMain): it runs one operation (Generate, or Delete/Import named by
// envCrashOp and envCrashArg) and SIGKILLs itself after the named step. It
// returns only on failure.
func crashChild(step string) error {
	pin, err := os.ReadFile(os.Getenv(envPINFile))
	if err != nil {
		return err
	}
	tok, err := openToken(os.Getenv(envModule), os.Getenv(envTokenLabel), string(pin))
	if err != nil {
		return err
	}
	db, err := store.Open(context.Background(), os.Getenv(envCrashDB))
	if err != nil {
		return err
	}
	svc := lifecycle.New(lifecycle.HSMToken{Token: tok}, db, policy.Default(), testLog)
	svc.SetAfterStep(func(s string) {
		if s == step {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	})
	ctx := context.Background()
	switch op, arg := os.Getenv(envCrashOp), os.Getenv(envCrashArg); op {
	case "delete":
		var id int64
		if _, err := fmt.Sscan(arg, &id); err != nil {
			return err
		}
		err = svc.Delete(ctx, id, nil, nil)
	case "import":
		pemText, rerr := os.ReadFile(arg)
		if rerr != nil {
			return rerr
		}
		_, err = svc.Import(ctx, lifecycle.ImportRequest{Certificate: string(pemText)})
	default:
		req, ok := crashRequests[os.Getenv(envCrashReq)]
		if !ok {
			req = p256
		}
		_, err = svc.Generate(ctx, req)
	}
	return fmt.Errorf("%s returned (%v) instead of dying at %s", os.Getenv(envCrashOp), err, step)
}

// runCrashChild re-executes the test binary as a crash child and checks
// that it died by SIGKILL.
func runCrashChild(t *testing.T, step, dbPath string, env ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(),
		envCrashStep+"="+step, envCrashDB+"="+dbPath,
		envTokenLabel+"="+testTok.Label, envPINFile+"="+testTok.PINFile, envModule+"="+testTok.Module)
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL at %s: %v\n%s", step, err, out)
	}
}

// failingRecords wraps the real store and fails CompleteKey, the last step.
type failingRecords struct{ *store.Store }

var errInjected = errors.New("injected: disk gone")

func (failingRecords) CompleteKey(context.Context, int64, string, []byte, *store.AuditEntry) error {
	return errInjected
}

// TestGenerateFailureDestroysKey: a failure after the key exists destroys
// the key and marks the record failed, within the same call.
func TestGenerateFailureDestroysKey(t *testing.T) {
	ctx := context.Background()
	db := openStore(t, filepath.Join(t.TempDir(), "csrd.db"))
	before, _ := testToken.CountObjects(ctx)
	svc := lifecycle.New(lifecycle.HSMToken{Token: testToken}, failingRecords{db}, policy.Default(), testLog)
	if _, err := svc.Generate(ctx, p256); !errors.Is(err, errInjected) {
		t.Fatalf("Generate error %v, want the injected one", err)
	}
	failed, err := db.ListByState(ctx, store.StateFailed)
	if err != nil || len(failed) != 1 {
		t.Fatalf("want one failed record: %v %v", failed, err)
	}
	if !strings.Contains(failed[0].FailReason, "injected") {
		t.Errorf("fail reason %q", failed[0].FailReason)
	}
	if _, err := testToken.FindKey(ctx, hsm.KeyRef{ID: failed[0].KeyID, Label: failed[0].KeyLabel}); !errors.Is(err, hsm.ErrNotFound) {
		t.Errorf("key still in token: %v", err)
	}
	if after, _ := testToken.CountObjects(ctx); after != before {
		t.Errorf("token objects %d before, %d after", before, after)
	}
}

// flakyFailRecords fails CompleteKey always and FailKey for its first
// failures calls, as a full disk does until space returns.
type flakyFailRecords struct {
	*store.Store
	mu       sync.Mutex
	failures int
}

func (*flakyFailRecords) CompleteKey(context.Context, int64, string, []byte, *store.AuditEntry) error {
	return errInjected
}

func (r *flakyFailRecords) FailKey(ctx context.Context, id int64, reason string, audit *store.AuditEntry) error {
	r.mu.Lock()
	if r.failures > 0 {
		r.failures--
		r.mu.Unlock()
		return errInjected
	}
	r.mu.Unlock()
	return r.Store.FailKey(ctx, id, reason, audit)
}

// TestGenerateCleanupRetried: when marking the record failed fails too, the
// key is still destroyed at once and the record is marked failed by a
// background retry as soon as the store works again — no restart needed.
func TestGenerateCleanupRetried(t *testing.T) {
	ctx := context.Background()
	db := openStore(t, filepath.Join(t.TempDir(), "csrd.db"))
	before, _ := testToken.CountObjects(ctx)
	recs := &flakyFailRecords{Store: db, failures: 3}
	svc := lifecycle.New(lifecycle.HSMToken{Token: testToken}, recs, policy.Default(), testLog)
	if _, err := svc.Generate(ctx, p256); !errors.Is(err, errInjected) {
		t.Fatalf("Generate error %v, want the injected one", err)
	}
	if after, _ := testToken.CountObjects(ctx); after != before {
		t.Errorf("token objects %d before, %d after the failed generate", before, after)
	}
	// Backoff 100, 200, 400 ms before the fourth, successful try.
	deadline := time.Now().Add(10 * time.Second)
	for {
		failed, err := db.ListByState(ctx, store.StateFailed)
		if err != nil {
			t.Fatal(err)
		}
		if len(failed) == 1 {
			break
		}
		if time.Now().After(deadline) {
			gen, _ := db.ListByState(ctx, store.StateGenerating)
			t.Fatalf("record not marked failed by the retry: %d generating, %d failed", len(gen), len(failed))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPolicyRefusalCreatesNothing: a refused request writes no record and
// creates no key.
func TestPolicyRefusalCreatesNothing(t *testing.T) {
	ctx := context.Background()
	db := openStore(t, filepath.Join(t.TempDir(), "csrd.db"))
	before, _ := testToken.CountObjects(ctx)
	svc := lifecycle.New(lifecycle.HSMToken{Token: testToken}, db, policy.Default(), testLog)
	_, err := svc.Generate(ctx, lifecycle.GenerateRequest{Subject: "CN=x", Key: policy.KeyRequest{KeyType: "RSA", KeyLength: 1024}})
	var pe *policy.Error
	if !errors.As(err, &pe) {
		t.Fatalf("want a policy error, got %v", err)
	}
	counts, _ := db.CountByState(ctx)
	if len(counts) != 0 && (counts[store.StateGenerating]+counts[store.StatePending]+counts[store.StateFailed]) != 0 {
		t.Errorf("records written: %v", counts)
	}
	if after, _ := testToken.CountObjects(ctx); after != before {
		t.Errorf("token objects %d before, %d after", before, after)
	}
}

// TestGenerateAuditRowWithRecord: a request's audit row is appended by the
// transaction that makes its record pending — present exactly when the key
// is known. When that transaction fails (here: a row the store refuses),
// there is no row, the key is destroyed and the record failed.
func TestGenerateAuditRowWithRecord(t *testing.T) {
	tests := []struct {
		name  string
		entry store.AuditEntry
		ok    bool
	}{
		{"row appended with the record", store.AuditEntry{Actor: "alice", Operation: "generate", Result: store.AuditOK, Status: 200}, true},
		{"refused row, nothing kept", store.AuditEntry{Actor: "alice", Result: store.AuditOK, Status: 200}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			db := openStore(t, filepath.Join(t.TempDir(), "csrd.db"))
			before, _ := testToken.CountObjects(ctx)
			svc := lifecycle.New(lifecycle.HSMToken{Token: testToken}, db, policy.Default(), testLog)
			req := p256
			e := tt.entry
			req.Audit = &e
			res, err := svc.Generate(ctx, req)
			if (err == nil) != tt.ok {
				t.Fatalf("Generate: %v, want success %v", err, tt.ok)
			}
			rows, lerr := db.ListAudit(ctx, 0, 10)
			if lerr != nil {
				t.Fatal(lerr)
			}
			if !tt.ok {
				if len(rows) != 0 {
					t.Errorf("failed Generate left audit rows %+v", rows)
				}
				if after, _ := testToken.CountObjects(ctx); after != before {
					t.Errorf("token objects %d before, %d after", before, after)
				}
				if failed, _ := db.ListByState(ctx, store.StateFailed); len(failed) != 1 {
					t.Errorf("want the record failed, got %+v", failed)
				}
				return
			}
			if len(rows) != 1 || rows[0].RecordID != res.ID || rows[0].KeyLabel != res.KeyLabel || rows[0].Hash != e.Hash {
				t.Errorf("audit rows %+v, want one naming record %d (%s)", rows, res.ID, res.KeyLabel)
			}
			// The token is shared with the other tests, whose fresh
			// databases reuse this label: leave nothing behind.
			if err := svc.Delete(ctx, res.ID, nil, nil); err != nil {
				t.Errorf("Delete: %v", err)
			}
		})
	}
}
