package lifecycle_test

import (
	"context"
	"crypto/elliptic"
	"database/sql"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

var reconP256 = hsm.KeySpec{Type: hsm.KeyECDSA, Curve: elliptic.P256()}

// The leftovers of crashes and outsiders that reconciliation repairs, each
// made on reconToken and destroyed when the test ends.

// leaveGenerating leaves what a crash inside Generate leaves: the record
// still generating, its key made.
func leaveGenerating(t *testing.T, db *store.Store) int64 {
	t.Helper()
	ctx := context.Background()
	keyID, err := reconToken.NewKeyID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, err := db.BeginKey(ctx, &store.KeyRecord{KeyID: keyID, TokenLabel: reconToken.Label(),
		TokenSerial: reconToken.Serial(), KeyType: "ECC", Curve: "P-256"}, lifecycle.LabelPrefix)
	if err != nil {
		t.Fatal(err)
	}
	ref := hsm.KeyRef{ID: keyID, Label: lifecycle.Label(id)}
	if _, err := reconToken.GenerateKeyPair(ctx, reconP256, ref); err != nil {
		t.Fatal(err)
	}
	destroyAtEnd(t, reconToken, ref)
	return id
}

// leavePending makes a pending record whose key is destroyed at the end.
func leavePending(t *testing.T, svc *lifecycle.Service, db *store.Store, subject string) (*lifecycle.GenerateResult, hsm.KeyRef) {
	t.Helper()
	res := generate(t, svc, subject, ecc256, nil)
	rec, err := db.Get(context.Background(), res.ID)
	if err != nil {
		t.Fatal(err)
	}
	ref := hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}
	destroyAtEnd(t, reconToken, ref)
	return res, ref
}

// leaveDeleting leaves a crash inside Delete, after its intent.
func leaveDeleting(t *testing.T, svc *lifecycle.Service, db *store.Store) int64 {
	t.Helper()
	res, _ := leavePending(t, svc, db, "CN=deleting")
	if err := db.BeginDelete(context.Background(), res.ID, nil); err != nil {
		t.Fatal(err)
	}
	return res.ID
}

// leaveMarrying leaves a crash inside Import, after its intent.
func leaveMarrying(t *testing.T, svc *lifecycle.Service, db *store.Store, ca *fixture.CA) int64 {
	t.Helper()
	res, _ := leavePending(t, svc, db, "CN=marrying")
	nb, na := valid()
	leaf := ca.IssueCSR(t, res.CSRPEM, nb, na)
	if err := db.BeginMarriage(context.Background(), res.ID, store.CertInfo{DER: leaf.Raw, Thumbprint: lifecycle.Thumbprint(leaf.Raw),
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}, nil); err != nil {
		t.Fatal(err)
	}
	return res.ID
}

// leaveNoCert leaves a married key whose certificate object someone
// removed from the token.
func leaveNoCert(t *testing.T, svc *lifecycle.Service, db *store.Store, ca *fixture.CA) int64 {
	t.Helper()
	res, ref := leavePending(t, svc, db, "CN=cert-removed")
	nb, na := valid()
	if _, err := svc.Import(context.Background(), lifecycle.ImportRequest{Certificate: fixture.PEM(ca.IssueCSR(t, res.CSRPEM, nb, na))}); err != nil {
		t.Fatal(err)
	}
	destroyClass(t, ref, hsm.ClassCertificate)
	return res.ID
}

// leaveLost leaves a pending record whose key pair someone removed from
// the token.
func leaveLost(t *testing.T, svc *lifecycle.Service, db *store.Store) int64 {
	t.Helper()
	res, ref := leavePending(t, svc, db, "CN=key-removed")
	destroyClass(t, ref, hsm.ClassPrivateKey)
	destroyClass(t, ref, hsm.ClassPublicKey)
	return res.ID
}

// leaveVanishedMarriage leaves a crash inside Import, after its intent,
// and then the key removed from the token: the import cannot finish.
func leaveVanishedMarriage(t *testing.T, svc *lifecycle.Service, db *store.Store, ca *fixture.CA) int64 {
	t.Helper()
	id := leaveMarrying(t, svc, db, ca)
	rec, err := db.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	ref := hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}
	destroyClass(t, ref, hsm.ClassPrivateKey)
	destroyClass(t, ref, hsm.ClassPublicKey)
	return id
}

// leaveOrphan leaves a key pair under a label csrd gives, with no record.
func leaveOrphan(t *testing.T) hsm.KeyRef {
	t.Helper()
	ref := hsm.KeyRef{ID: []byte("orphan-9100"), Label: lifecycle.Label(9100)}
	if _, err := reconToken.GenerateKeyPair(context.Background(), reconP256, ref); err != nil {
		t.Fatal(err)
	}
	destroyAtEnd(t, reconToken, ref)
	return ref
}

// TestReconcileAuditsItsActs: every act of reconciliation that destroys or
// binds key material is on the audit chain, naming who reconciled (csrd at
// start-up, the operator for csrctl): the interrupted generate's key
// destroyed, the interrupted delete finished, the interrupted import
// finished, the missing certificate object written again, the record whose
// key pair is gone marked lost (as is the interrupted import whose key
// vanished: reported lost, not an aborted marriage), and, with
// DestroyOrphans, the orphan destroyed.
func TestReconcileAuditsItsActs(t *testing.T) {
	tests := []struct {
		name                       string
		opts                       lifecycle.ReconcileOptions
		actor, method, source, rid string
	}{{
		name:  "csrd at start-up",
		actor: lifecycle.ReconcileActor, source: lifecycle.ReconcileActor,
	}, {
		name: "csrctl reconcile -destroy",
		opts: lifecycle.ReconcileOptions{DestroyOrphans: true, Audit: store.AuditEntry{
			Actor: "local:alice", AuthMethod: "local", Source: "csrctl", RequestID: "csrctl-0123456789abcdef"}},
		actor: "local:alice", method: "local", source: "csrctl", rid: "csrctl-0123456789abcdef",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			svc, db := newService(t, reconToken)
			ca := fixture.NewCA(t, "Reconcile audit CA")
			generating, deleting := leaveGenerating(t, db), leaveDeleting(t, svc, db)
			marrying, noCert := leaveMarrying(t, svc, db, ca), leaveNoCert(t, svc, db, ca)
			lost, vanished := leaveLost(t, svc, db), leaveVanishedMarriage(t, svc, db, ca)
			orphan := leaveOrphan(t)
			rep, err := svc.Reconcile(ctx, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Interrupted != 1 || rep.KeysDestroyed != 1 || rep.DeletesFinished != 1 || rep.MarriagesFinished != 1 ||
				len(rep.CertsRestored) != 1 || len(rep.Lost) != 2 || rep.MarriagesAborted != 0 {
				t.Fatalf("report %+v: want one of each repair", rep)
			}
			want := map[int64]string{
				generating: lifecycle.AuditReconcileDestroy,
				deleting:   lifecycle.AuditReconcileDestroy,
				marrying:   lifecycle.AuditReconcileRepair,
				noCert:     lifecycle.AuditReconcileRepair,
				lost:       lifecycle.AuditReconcileLost,
				vanished:   lifecycle.AuditReconcileLost,
			}
			if tc.opts.DestroyOrphans {
				want[9100] = lifecycle.AuditReconcileDestroy
			}
			rows, err := db.ListAudit(ctx, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			got := map[int64]*store.AuditEntry{}
			for _, r := range rows {
				if strings.HasPrefix(r.Operation, "reconcile_") {
					got[r.RecordID] = r
				}
			}
			if len(got) != len(want) {
				t.Errorf("%d reconciliation rows, want %d: %+v", len(got), len(want), rows)
			}
			rid := tc.rid
			for id, op := range want {
				r := got[id]
				switch {
				case r == nil:
					t.Errorf("record %d: no %s row", id, op)
					continue
				case r.Operation != op || r.Result != store.AuditOK || r.KeyLabel != lifecycle.Label(id):
					t.Errorf("record %d: row %+v, want %s ok on %s", id, r, op, lifecycle.Label(id))
				case r.Actor != tc.actor || r.AuthMethod != tc.method || r.Source != tc.source:
					t.Errorf("record %d: row by %q/%q/%q, want %q/%q/%q", id, r.Actor, r.AuthMethod, r.Source, tc.actor, tc.method, tc.source)
				}
				if rid == "" {
					rid = r.RequestID // csrd's own run names itself once
				}
				if r.RequestID != rid || rid == "" {
					t.Errorf("record %d: request id %q, want one id for the run (%q)", id, r.RequestID, rid)
				}
			}
			if r := got[9100]; r != nil && !strings.Contains(r.Detail, hex.EncodeToString(orphan.ID)) {
				t.Errorf("orphan row detail %q does not name its CKA_ID", r.Detail)
			}
			if _, err := db.VerifyAudit(ctx); err != nil {
				t.Errorf("audit chain after reconciliation: %v", err)
			}
		})
	}
}

// TestReconcileActsOnlyWithTheirRow: when its audit row cannot be written,
// reconciliation fails and leaves the record as it was (the record's change
// and its row commit together), and destroys no orphan and writes no
// certificate object (their row comes first).
func TestReconcileActsOnlyWithTheirRow(t *testing.T) {
	tests := []struct {
		name  string
		leave func(t *testing.T, svc *lifecycle.Service, db *store.Store, ca *fixture.CA) (id int64, ref hsm.KeyRef)
		// unchanged checks that the record and the token are as left.
		unchanged func(rec *store.KeyRecord, token []hsm.ObjectClass) bool
	}{{
		name: "interrupted generate",
		leave: func(t *testing.T, _ *lifecycle.Service, db *store.Store, _ *fixture.CA) (int64, hsm.KeyRef) {
			return leaveGenerating(t, db), hsm.KeyRef{}
		},
		unchanged: func(rec *store.KeyRecord, _ []hsm.ObjectClass) bool { return rec.State == store.StateGenerating },
	}, {
		name: "interrupted delete",
		leave: func(t *testing.T, svc *lifecycle.Service, db *store.Store, _ *fixture.CA) (int64, hsm.KeyRef) {
			return leaveDeleting(t, svc, db), hsm.KeyRef{}
		},
		unchanged: func(rec *store.KeyRecord, _ []hsm.ObjectClass) bool {
			return rec.State == store.StatePending && rec.Intent == store.IntentDelete
		},
	}, {
		name: "interrupted import",
		leave: func(t *testing.T, svc *lifecycle.Service, db *store.Store, ca *fixture.CA) (int64, hsm.KeyRef) {
			return leaveMarrying(t, svc, db, ca), hsm.KeyRef{}
		},
		unchanged: func(rec *store.KeyRecord, _ []hsm.ObjectClass) bool {
			return rec.State == store.StatePending && rec.Intent == store.IntentMarry
		},
	}, {
		name: "missing certificate object",
		leave: func(t *testing.T, svc *lifecycle.Service, db *store.Store, ca *fixture.CA) (int64, hsm.KeyRef) {
			id := leaveNoCert(t, svc, db, ca)
			rec, err := db.Get(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			return id, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}
		},
		unchanged: func(rec *store.KeyRecord, token []hsm.ObjectClass) bool {
			return rec.State == store.StateMarried && len(token) == 2 // no certificate written
		},
	}, {
		name: "orphan",
		leave: func(t *testing.T, _ *lifecycle.Service, _ *store.Store, _ *fixture.CA) (int64, hsm.KeyRef) {
			return 0, leaveOrphan(t)
		},
		unchanged: func(_ *store.KeyRecord, token []hsm.ObjectClass) bool { return len(token) == 2 },
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "csrd.db")
			db := openStore(t, path)
			svc := lifecycle.New(lifecycle.HSMToken{Token: reconToken}, db, policy.Default(), testLog)
			id, ref := tc.leave(t, svc, db, fixture.NewCA(t, "Reconcile audit CA"))
			before, err := db.CountAudit(ctx)
			if err != nil {
				t.Fatal(err)
			}
			refuseAuditRows(t, path)

			if _, err := svc.Reconcile(ctx, lifecycle.ReconcileOptions{DestroyOrphans: true}); err == nil {
				t.Fatal("reconciliation succeeded although no audit row can be written")
			}
			rec := &store.KeyRecord{}
			if id != 0 {
				if rec, err = db.Get(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			var token []hsm.ObjectClass
			if len(ref.ID) > 0 {
				if token, err = reconToken.ObjectsOf(ctx, ref); err != nil {
					t.Fatal(err)
				}
			}
			if !tc.unchanged(rec, token) {
				t.Errorf("after a reconciliation that could not audit: record %s/%q, token %v; want them as left", rec.State, rec.Intent, token)
			}
			if n, err := db.CountAudit(ctx); err != nil || n != before {
				t.Errorf("%d audit rows (%v), want the %d written before", n, err, before)
			}
		})
	}
}

// refuseAuditRows makes the database at path refuse every new audit row,
// as a full disk or a broken chain would.
func refuseAuditRows(t *testing.T, path string) {
	t.Helper()
	raw, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`CREATE TRIGGER audit_refused BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'injected'); END`); err != nil {
		t.Fatal(err)
	}
}

// TestInterruptedImportOnHalfAPair: an interrupted import whose key pair
// lost only its public half (SoftHSM can lose one object file to a kill) is
// not finished onto the private key left: the record is reported lost with
// the half it lacks, and no certificate is written.
func TestInterruptedImportOnHalfAPair(t *testing.T) {
	ctx := context.Background()
	svc, db := newService(t, reconToken)
	ca := fixture.NewCA(t, "Half a pair CA")
	id := leaveMarrying(t, svc, db, ca)
	rec, err := db.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	ref := hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}
	destroyClass(t, ref, hsm.ClassPublicKey)
	rep, err := svc.Reconcile(ctx, lifecycle.ReconcileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Lost) != 1 || rep.Lost[0].ID != id || len(rep.Lost[0].Missing) != 1 || rep.Lost[0].Missing[0] != hsm.ClassPublicKey ||
		rep.MarriagesFinished != 0 || rep.MarriagesAborted != 0 {
		t.Fatalf("report %+v: want record %d lost, missing its public key, and no marriage", rep, id)
	}
	if r, _ := db.Get(ctx, id); r.State != store.StateLost {
		t.Errorf("record %d is %s, want lost", id, r.State)
	}
	if certs, _ := reconToken.Certificates(ctx, ref); len(certs) != 0 {
		t.Errorf("a certificate was written beside half a key pair")
	}
}
