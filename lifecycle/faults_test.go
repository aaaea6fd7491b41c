package lifecycle_test

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

// faultyRecords is the real store with failures injected into the writes
// Generate makes: each named method fails while broken.
type faultyRecords struct {
	*store.Store
	mu     sync.Mutex
	broken map[string]error
}

func (r *faultyRecords) breakMethod(method string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.broken == nil {
		r.broken = map[string]error{}
	}
	r.broken[method] = err
}

func (r *faultyRecords) heal(method string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.broken, method)
}

func (r *faultyRecords) failing(method string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.broken[method]
}

func (r *faultyRecords) BeginKey(ctx context.Context, rec *store.KeyRecord, labelPrefix string) (int64, error) {
	if err := r.failing("BeginKey"); err != nil {
		return 0, err
	}
	return r.Store.BeginKey(ctx, rec, labelPrefix)
}

func (r *faultyRecords) CompleteKey(ctx context.Context, id int64, csrPEM string, spki []byte, audit *store.AuditEntry) error {
	if err := r.failing("CompleteKey"); err != nil {
		return err
	}
	return r.Store.CompleteKey(ctx, id, csrPEM, spki, audit)
}

func (r *faultyRecords) CompleteHybridKey(ctx context.Context, id int64, csrPEM string, spki []byte, alt store.AltCompletion, audit *store.AuditEntry) error {
	if err := r.failing("CompleteHybridKey"); err != nil {
		return err
	}
	return r.Store.CompleteHybridKey(ctx, id, csrPEM, spki, alt, audit)
}

func (r *faultyRecords) FailKey(ctx context.Context, id int64, reason string, audit *store.AuditEntry) error {
	if err := r.failing("FailKey"); err != nil {
		return err
	}
	return r.Store.FailKey(ctx, id, reason, audit)
}

// faultEnv is one fault test's world: a fake token, a real SQLite store
// with injectable failures, and the record the set-up made (0: none).
type faultEnv struct {
	svc  *lifecycle.Service
	tok  *fakeToken
	db   *store.Store
	recs *faultyRecords
	id   int64
	pem  string // the certificate issued for record id, PEM
}

func newFaultEnv(t *testing.T, storage hsm.AltStorage) *faultEnv {
	t.Helper()
	tok := newFakeToken("fake-a")
	if storage != "" {
		tok.storage = storage
	}
	db := openStore(t, filepath.Join(t.TempDir(), "csrd.db"))
	recs := &faultyRecords{Store: db}
	svc := lifecycle.New(tok, recs, policy.Default(), testLog)
	svc.SetAbandonRetry(time.Millisecond)
	return &faultEnv{svc: svc, tok: tok, db: db, recs: recs}
}

// pending makes a pending record with a key on the token.
func (e *faultEnv) pending(t *testing.T) {
	t.Helper()
	res, err := e.svc.Generate(context.Background(), p256)
	if err != nil {
		t.Fatal(err)
	}
	e.id = res.ID
}

// issued makes a pending record and issues its certificate.
func (e *faultEnv) issued(t *testing.T) {
	t.Helper()
	res, err := e.svc.Generate(context.Background(), p256)
	if err != nil {
		t.Fatal(err)
	}
	nb, na := valid()
	e.id, e.pem = res.ID, fixture.PEM(fixture.NewCA(t, "Fault CA").IssueCSR(t, res.CSRPEM, nb, na))
}

// outcome is what the records and the token hold.
type outcome struct {
	states  map[store.State]int
	intent  store.Intent // of the set-up's record
	objects int          // object groups (one per key pair) on the token
	cert    bool         // the set-up's key has its certificate object
}

func (e *faultEnv) outcome(t *testing.T) outcome {
	t.Helper()
	ctx := context.Background()
	n, err := e.db.CountByState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := outcome{states: map[store.State]int{}, objects: len(e.tok.groups())}
	for st, c := range n {
		if c > 0 {
			got.states[st] = c
		}
	}
	if e.id != 0 {
		rec, err := e.db.Get(ctx, e.id)
		if err != nil {
			t.Fatal(err)
		}
		got.intent = rec.Intent
		for _, g := range e.tok.groups() {
			if g.ref.Label == rec.KeyLabel && hasClass(g.classes, hsm.ClassCertificate) {
				got.cert = true
			}
		}
	}
	return got
}

func (o outcome) equal(p outcome) bool {
	return maps.Equal(o.states, p.states) && o.intent == p.intent && o.objects == p.objects && o.cert == p.cert
}

var errStore = errors.New("injected: store write failed")

// TestFaults drives every failure path of Generate, Delete and Import
// against a fake token and a real store, and checks what the records and
// the token hold at once (after) and once background retries or
// reconciliation have run (final): no key is ever left without a live
// record that names it, and no failed or deleted record keeps one.
func TestFaults(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		storage hsm.AltStorage // alternative keys; "" means sealed
		setup   func(*faultEnv, *testing.T)
		inject  func(*faultEnv)
		act     func(*faultEnv) error
		wantErr error
		after   outcome
		// finish, when set, runs after the checks of after (reconciliation,
		// a retry); final is then what must hold, waited for up to a few
		// seconds (background clean-up).
		finish func(*faultEnv) error
		final  *outcome
	}{{
		name:    "no key ID: nothing recorded",
		inject:  func(e *faultEnv) { e.tok.fail(opNewKeyID, tokenErr(opNewKeyID)) },
		act:     generateP256,
		wantErr: hsm.ErrUnavailable,
		after:   outcome{states: map[store.State]int{}},
	}, {
		name:    "record not written: no key made",
		inject:  func(e *faultEnv) { e.recs.breakMethod("BeginKey", errStore) },
		act:     generateP256,
		wantErr: errStore,
		after:   outcome{states: map[store.State]int{}},
	}, {
		name:    "key generation fails after the record exists",
		inject:  func(e *faultEnv) { e.tok.fail(opGenerate, tokenErr(opGenerate)) },
		act:     generateP256,
		wantErr: hsm.ErrUnavailable,
		after:   outcome{states: map[store.State]int{store.StateFailed: 1}},
	}, {
		name:    "key generation fails after making the pair",
		inject:  func(e *faultEnv) { e.tok.fail(opGeneratePartial, tokenErr(opGeneratePartial)) },
		act:     generateP256,
		wantErr: hsm.ErrUnavailable,
		after:   outcome{states: map[store.State]int{store.StateFailed: 1}},
	}, {
		name:    "CSR signing fails",
		inject:  func(e *faultEnv) { e.tok.fail(opSign, tokenErr(opSign)) },
		act:     generateP256,
		wantErr: hsm.ErrUnavailable,
		after:   outcome{states: map[store.State]int{store.StateFailed: 1}},
	}, {
		name:    "completing the record fails",
		inject:  func(e *faultEnv) { e.recs.breakMethod("CompleteKey", errStore) },
		act:     generateP256,
		wantErr: errStore,
		after:   outcome{states: map[store.State]int{store.StateFailed: 1}},
	}, {
		name: "clean-up cannot destroy the key: retried until it can",
		inject: func(e *faultEnv) {
			e.recs.breakMethod("CompleteKey", errStore)
			e.tok.breakOp(opDestroy, tokenErr(opDestroy))
		},
		act:     generateP256,
		wantErr: errStore,
		// The record still says generating and names the key it could not
		// destroy yet; the background retry finishes once the token works.
		after:  outcome{states: map[store.State]int{store.StateGenerating: 1}, objects: 1},
		finish: func(e *faultEnv) error { e.tok.heal(opDestroy); return nil },
		final:  &outcome{states: map[store.State]int{store.StateFailed: 1}},
	}, {
		name: "clean-up cannot fail the record: retried until it can",
		inject: func(e *faultEnv) {
			e.recs.breakMethod("CompleteKey", errStore)
			e.recs.breakMethod("FailKey", errStore)
		},
		act:     generateP256,
		wantErr: errStore,
		after:   outcome{states: map[store.State]int{store.StateGenerating: 1}},
		finish:  func(e *faultEnv) error { e.recs.heal("FailKey"); return nil },
		final:   &outcome{states: map[store.State]int{store.StateFailed: 1}},
	}, {
		name:    "hybrid: the sealed alternative key fails",
		inject:  func(e *faultEnv) { e.tok.fail(opSealMLDSA, tokenErr(opSealMLDSA)) },
		act:     generateHybrid,
		wantErr: hsm.ErrUnavailable,
		after:   outcome{states: map[store.State]int{store.StateFailed: 1}},
	}, {
		name:    "hybrid: the alternative key in the token fails",
		storage: hsm.AltStorageToken,
		inject:  func(e *faultEnv) { e.tok.fail(opGenerateMLDSA, tokenErr(opGenerateMLDSA)) },
		act:     generateHybrid,
		wantErr: hsm.ErrUnavailable,
		after:   outcome{states: map[store.State]int{store.StateFailed: 1}},
	}, {
		name:    "hybrid: completing fails with both pairs in the token",
		storage: hsm.AltStorageToken,
		inject:  func(e *faultEnv) { e.recs.breakMethod("CompleteHybridKey", errStore) },
		act:     generateHybrid,
		wantErr: errStore,
		after:   outcome{states: map[store.State]int{store.StateFailed: 1}},
	}, {
		name:    "hybrid: clean-up destroys the primary pair but not the alternative one yet",
		storage: hsm.AltStorageToken,
		inject: func(e *faultEnv) {
			e.recs.breakMethod("CompleteHybridKey", errStore)
			e.tok.fail(opDestroy, nil) // the primary pair goes
			e.tok.breakOp(opDestroy, tokenErr(opDestroy))
		},
		act:     generateHybrid,
		wantErr: errStore,
		after:   outcome{states: map[store.State]int{store.StateGenerating: 1}, objects: 1},
		finish:  func(e *faultEnv) error { e.tok.heal(opDestroy); return nil },
		final:   &outcome{states: map[store.State]int{store.StateFailed: 1}},
	}, {
		name:    "Delete cannot destroy the key: the intent stays for reconciliation",
		setup:   (*faultEnv).pending,
		inject:  func(e *faultEnv) { e.tok.fail(opDestroy, tokenErr(opDestroy)) },
		act:     func(e *faultEnv) error { return e.svc.Delete(ctx, e.id, nil, nil) },
		wantErr: hsm.ErrUnavailable,
		after:   outcome{states: map[store.State]int{store.StatePending: 1}, intent: store.IntentDelete, objects: 1},
		finish:  reconcile,
		final:   &outcome{states: map[store.State]int{store.StateDeleted: 1}},
	}, {
		name:    "Delete cannot destroy the key: retrying the Delete finishes it",
		setup:   (*faultEnv).pending,
		inject:  func(e *faultEnv) { e.tok.fail(opDestroy, tokenErr(opDestroy)) },
		act:     func(e *faultEnv) error { return e.svc.Delete(ctx, e.id, nil, nil) },
		wantErr: hsm.ErrUnavailable,
		after:   outcome{states: map[store.State]int{store.StatePending: 1}, intent: store.IntentDelete, objects: 1},
		finish:  func(e *faultEnv) error { return e.svc.Delete(ctx, e.id, nil, nil) },
		final:   &outcome{states: map[store.State]int{store.StateDeleted: 1}},
	}, {
		name:    "Import cannot store the certificate: the intent stays for reconciliation",
		setup:   (*faultEnv).issued,
		inject:  func(e *faultEnv) { e.tok.fail(opPutCertificate, tokenErr(opPutCertificate)) },
		act:     importCert,
		wantErr: hsm.ErrUnavailable,
		after:   outcome{states: map[store.State]int{store.StatePending: 1}, intent: store.IntentMarry, objects: 1},
		finish:  reconcile,
		final:   &outcome{states: map[store.State]int{store.StateMarried: 1}, objects: 1, cert: true},
	}, {
		name:    "Import cannot store the certificate: importing again finishes it",
		setup:   (*faultEnv).issued,
		inject:  func(e *faultEnv) { e.tok.fail(opPutCertificate, tokenErr(opPutCertificate)) },
		act:     importCert,
		wantErr: hsm.ErrUnavailable,
		after:   outcome{states: map[store.State]int{store.StatePending: 1}, intent: store.IntentMarry, objects: 1},
		finish:  importCert,
		final:   &outcome{states: map[store.State]int{store.StateMarried: 1}, objects: 1, cert: true},
	}, {
		name:    "Import cannot look at the token: nothing is written there",
		setup:   (*faultEnv).issued,
		inject:  func(e *faultEnv) { e.tok.fail(opObjectsOf, tokenErr(opObjectsOf)) },
		act:     importCert,
		wantErr: hsm.ErrUnavailable,
		after:   outcome{states: map[store.State]int{store.StatePending: 1}, intent: store.IntentMarry, objects: 1},
		finish:  reconcile,
		final:   &outcome{states: map[store.State]int{store.StateMarried: 1}, objects: 1, cert: true},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFaultEnv(t, tt.storage)
			if tt.setup != nil {
				tt.setup(e, t)
			}
			tt.inject(e)
			err := tt.act(e)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if got := e.outcome(t); !got.equal(tt.after) {
				t.Errorf("after the failure: %+v, want %+v", got, tt.after)
			}
			noKeyWithoutRecord(t, e.tok, e.db)
			if tt.final == nil {
				return
			}
			if tt.finish != nil {
				if err := tt.finish(e); err != nil {
					t.Fatalf("finishing: %v", err)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for got := e.outcome(t); !got.equal(*tt.final); got = e.outcome(t) {
				if time.Now().After(deadline) {
					t.Fatalf("finally: %+v, want %+v", got, *tt.final)
				}
				time.Sleep(5 * time.Millisecond)
			}
			noKeyWithoutRecord(t, e.tok, e.db)
		})
	}
}

func generateP256(e *faultEnv) error {
	_, err := e.svc.Generate(context.Background(), p256)
	return err
}

func generateHybrid(e *faultEnv) error {
	_, err := e.svc.Generate(context.Background(), hybrid)
	return err
}

func importCert(e *faultEnv) error {
	_, err := e.svc.Import(context.Background(), lifecycle.ImportRequest{Certificate: e.pem})
	return err
}

func reconcile(e *faultEnv) error {
	_, err := e.svc.Reconcile(context.Background(), lifecycle.ReconcileOptions{})
	return err
}

// TestPoolMovesOffFailingToken: a token that fails with a token-level error
// is left for another, as a new record; the attempt's record is failed, its
// key gone, and the failing token is out of rotation for the next request.
func TestPoolMovesOffFailingToken(t *testing.T) {
	ctx := context.Background()
	a, b := newFakeToken("fake-a"), newFakeToken("fake-b")
	a.breakOp(opGenerate, tokenErr(opGenerate))
	pool, err := lifecycle.NewTokenPool(testLog, a, b)
	if err != nil {
		t.Fatal(err)
	}
	db := openStore(t, filepath.Join(t.TempDir(), "csrd.db"))
	svc := lifecycle.NewPooled(pool, db, policy.Default(), testLog)
	for i := range 3 {
		res, err := svc.Generate(ctx, p256)
		if err != nil {
			t.Fatalf("Generate %d: %v", i, err)
		}
		if res.TokenLabel != b.Label() {
			t.Errorf("Generate %d placed its key on %s, want %s", i, res.TokenLabel, b.Label())
		}
	}
	perToken, err := db.CountByToken(ctx, store.StateFailed)
	if err != nil {
		t.Fatal(err)
	}
	if perToken[a.Label()] != 1 {
		t.Errorf("failed records per token %v, want one attempt on %s (then out of rotation)", perToken, a.Label())
	}
	if len(a.groups()) != 0 || len(b.groups()) != 3 {
		t.Errorf("%d key pairs on %s and %d on %s, want 0 and 3", len(a.groups()), a.Label(), len(b.groups()), b.Label())
	}
	noKeyWithoutRecord(t, a, db)
	noKeyWithoutRecord(t, b, db)
}
