package lifecycle_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

// fakeLeases says which nodes are live elsewhere.
type fakeLeases map[string]bool

func (f fakeLeases) HeldElsewhere(_ context.Context, node string) (bool, error) { return f[node], nil }

// TestReconcileLeases: on a token several nodes share, work in progress
// leased by another live node — a generation it is making, a delete it is
// carrying out — is left to that node, even by a reconciliation with
// MinAge 0 (a node's start-up). Once that node is gone, the work is
// finished like any interrupted work.
func TestReconcileLeases(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "csrd.db")
	db := openStore(t, path)
	svc := lifecycle.New(lifecycle.HSMToken{Token: reconToken}, db, policy.Default(), testLog)
	res := generate(t, svc, "CN=deleting.example.com", ecc256, nil)

	other, err := store.Open(ctx, path, store.WithNode("node-b"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	gen, err := other.BeginKey(ctx, &store.KeyRecord{KeyID: []byte{0x4e, 0x42}, TokenLabel: reconToken.Label(),
		TokenSerial: reconToken.Serial(), KeyType: "ECC", Curve: "P-256"}, lifecycle.LabelPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.BeginDelete(ctx, res.ID, nil); err != nil {
		t.Fatal(err)
	}

	leases := fakeLeases{"node-b": true}
	svc.SetLeases(leases)
	rep, err := svc.Reconcile(ctx, lifecycle.ReconcileOptions{})
	if err != nil || rep.InProgress != 2 || rep.Interrupted != 0 || rep.DeletesFinished != 0 {
		t.Fatalf("with node-b live: %+v, %v; want both records left to it", rep, err)
	}
	for id, want := range map[int64]store.State{gen: store.StateGenerating, res.ID: store.StatePending} {
		if r, _ := db.Get(ctx, id); r.State != want || r.Node != "node-b" {
			t.Errorf("record %d: %s leased to %q, want %s leased to node-b", id, r.State, r.Node, want)
		}
	}
	if _, err := reconToken.FindKey(ctx, refOf(t, db, res.ID)); err != nil {
		t.Errorf("the key node-b is deleting was touched: %v", err)
	}

	leases["node-b"] = false // its heartbeat is older than node_timeout
	rep, err = svc.Reconcile(ctx, lifecycle.ReconcileOptions{})
	if err != nil || rep.Interrupted != 1 || rep.DeletesFinished != 1 {
		t.Fatalf("with node-b gone: %+v, %v; want its work finished", rep, err)
	}
	for id, want := range map[int64]store.State{gen: store.StateFailed, res.ID: store.StateDeleted} {
		if r, _ := db.Get(ctx, id); r.State != want {
			t.Errorf("record %d: %s, want %s", id, r.State, want)
		}
	}
}

func refOf(t *testing.T, db *store.Store, id int64) hsm.KeyRef {
	t.Helper()
	r, err := db.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return hsm.KeyRef{ID: r.KeyID, Label: r.KeyLabel}
}
