package lifecycle_test

import (
	"context"
	"errors"
	"testing"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/store"
)

// TestRetire destroys a married key and its certificate object in the
// token, after the audit row; the record keeps its certificate facts.
// Retiring again changes nothing; pending keys are refused (they are
// deleted instead).
func TestRetire(t *testing.T) {
	ctx := context.Background()
	svc, db := newService(t, testToken)
	ca := fixture.NewCA(t, "Retire CA")
	res := generate(t, svc, "CN=retire.example.com", ecc256, nil)
	nb, na := valid()
	cert := ca.IssueCSR(t, res.CSRPEM, nb, na)
	if _, err := svc.Import(ctx, lifecycle.ImportRequest{Certificate: fixture.PEM(cert)}); err != nil {
		t.Fatal(err)
	}
	rec, _ := db.Get(ctx, res.ID)
	ref := hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}
	if objs, _ := testToken.ObjectsOf(ctx, ref); len(objs) != 3 {
		t.Fatalf("before: %d objects, want key pair and certificate", len(objs))
	}
	pending := generate(t, svc, "CN=pending.example.com", ecc256, nil)
	if err := svc.Retire(ctx, pending.ID, lifecycle.RetireRequest{}); !errors.Is(err, lifecycle.ErrConflict) {
		t.Errorf("Retire(pending) = %v, want ErrConflict", err)
	}
	_ = svc.Delete(ctx, pending.ID, nil, nil)

	audit := &store.AuditEntry{Actor: "local:ops", AuthMethod: "local", Source: "test", Operation: "retire",
		Result: store.AuditOK, RecordID: res.ID, KeyLabel: rec.KeyLabel, RequestID: "t1"}
	if err := svc.Retire(ctx, res.ID, lifecycle.RetireRequest{Reason: "retired by test", Audit: audit}); err != nil {
		t.Fatal(err)
	}
	if objs, _ := testToken.ObjectsOf(ctx, ref); len(objs) != 0 {
		t.Errorf("after: %v still in the token", objs)
	}
	got, _ := db.Get(ctx, res.ID)
	if got.State != store.StateRetired || got.Cert.Thumbprint != lifecycle.Thumbprint(cert.Raw) || got.FailReason != "retired by test" {
		t.Errorf("record after Retire: %s, thumbprint %q, reason %q", got.State, got.Cert.Thumbprint, got.FailReason)
	}
	if audit.Hash == "" {
		t.Error("the audit row was not appended")
	}
	if err := svc.Retire(ctx, res.ID, lifecycle.RetireRequest{}); err != nil {
		t.Errorf("Retire again: %v", err)
	}
	if err := svc.Retire(ctx, 99999, lifecycle.RetireRequest{}); !errors.Is(err, lifecycle.ErrNotFound) {
		t.Errorf("Retire(unknown) = %v", err)
	}
}

// TestRetireInterrupted: a crash after the intent (and after the token
// change) is finished by reconciliation.
func TestRetireInterrupted(t *testing.T) {
	for _, step := range []string{"retire-recorded", "retire-destroyed"} {
		t.Run(step, func(t *testing.T) {
			ctx := context.Background()
			svc, db := newService(t, testToken)
			ca := fixture.NewCA(t, "Retire CA")
			res := generate(t, svc, "CN=crash.example.com", ecc256, nil)
			nb, na := valid()
			if _, err := svc.Import(ctx, lifecycle.ImportRequest{Certificate: fixture.PEM(ca.IssueCSR(t, res.CSRPEM, nb, na))}); err != nil {
				t.Fatal(err)
			}
			errCrash := errors.New("crash")
			svc.SetAfterStep(func(s string) {
				if s == step {
					panic(errCrash)
				}
			})
			func() {
				defer func() { _ = recover() }()
				_ = svc.Retire(ctx, res.ID, lifecycle.RetireRequest{Reason: "x"})
			}()
			svc.SetAfterStep(nil)
			if r, _ := db.Get(ctx, res.ID); r.State != store.StateMarried || r.Intent != store.IntentRetire {
				t.Fatalf("after the crash: %s/%q", r.State, r.Intent)
			}
			rep, err := svc.Reconcile(ctx, lifecycle.ReconcileOptions{})
			if err != nil || rep.RetiresFinished != 1 || len(rep.Lost) != 0 {
				t.Fatalf("Reconcile = %+v, %v", rep, err)
			}
			rec, _ := db.Get(ctx, res.ID)
			if objs, _ := testToken.ObjectsOf(ctx, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}); rec.State != store.StateRetired || len(objs) != 0 {
				t.Errorf("after reconciliation: %s, %v in the token", rec.State, objs)
			}
		})
	}
}
