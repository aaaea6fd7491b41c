package lifecycle_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
)

// The audit key carries csrd's label prefix but belongs to no record:
// reconciliation, even with -destroy, neither counts it nor lists it as
// an orphan, and leaves it in the token.
func TestReconcileLeavesAuditKey(t *testing.T) {
	ctx := context.Background()
	key, err := reconToken.AuditKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reconToken.DestroyKey(ctx, key.Ref()) }()
	svc, _ := newService(t, reconToken)
	rep, err := svc.Reconcile(ctx, lifecycle.ReconcileOptions{DestroyOrphans: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range rep.Orphans {
		if o.Ref.Label == hsm.AuditKeyLabel {
			t.Errorf("the audit key was taken for an orphan: %v", o)
		}
	}
	objs, err := reconToken.ListObjects(ctx, lifecycle.LabelPrefix)
	if err != nil {
		t.Fatal(err)
	}
	audit := 0
	for _, o := range objs {
		if o.Ref.Label == hsm.AuditKeyLabel {
			audit++
		}
	}
	if audit != 2 || rep.Objects != len(objs)-audit {
		t.Errorf("%d audit key objects in the token (want 2); reconcile counted %d objects of %d listed", audit, rep.Objects, len(objs))
	}
	keys, err := reconToken.AuditKeys(ctx)
	if err != nil || len(keys) != 1 || !bytes.Equal(keys[0].Ref().ID, key.Ref().ID) {
		t.Fatalf("audit keys after reconcile -destroy: %v, %v", keys, err)
	}
}
