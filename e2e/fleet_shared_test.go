package e2e

import (
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/store"
)

// TestFleetSharedToken: two nodes on one token (one SoftHSM token
// directory, as two appliances on one network HSM partition). A key made
// on a is married and deleted through b with no forwarding; b's start-up
// reconciliation (MinAge 0) leaves alone a generation a live a holds the
// lease on — key and record — and finishes it once a is gone.
func TestFleetSharedToken(t *testing.T) {
	fullRunOnly(t, "two nodes on one PostgreSQL sharing one token")
	pg := fixture.SharedPostgres(t)
	dsn := pg.CreateDB(t, t.Name())
	secret := filepath.Join(t.TempDir(), "cluster-secret")
	if err := os.WriteFile(secret, []byte("fleet-test-shared-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const label = "fleet-shared"
	if err := baseTok.AddToken(label); err != nil {
		t.Fatal(err)
	}
	var nodes []*fleetNode
	var view *hsm.Token // one view of the one token, for both nodes
	for _, name := range []string{"a", "b"} {
		n := newFleetNodeOn(t, pg, dsn, secret, name, label, view)
		view = n.in.View
		n.start(t)
		t.Cleanup(func() { n.d.kill() })
		nodes = append(nodes, n)
	}
	a, b := nodes[0], nodes[1]
	waitFor(t, 15*time.Second, "both nodes live", func() bool {
		live := 0
		for _, v := range getNodes(t, a).Nodes {
			if v.Live {
				live++
			}
		}
		return live == 2
	})
	ctx := context.Background()
	db, err := store.Open(ctx, dsn, store.WithPassword(pg.Password), store.WithNode("a"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	// Made on a, married and deleted through b, which reaches the token.
	var made []int64
	var csrs []string
	for i := range 2 {
		ans := a.client.Generate(ctx, p256Body(int64(i)))
		if err := ans.Failure(); err != nil {
			t.Fatal(err)
		}
		made, csrs = append(made, ans.ID), append(csrs, ans.CSR)
	}
	blk, _ := pem.Decode([]byte(csrs[0]))
	cr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if ans := b.client.Import(ctx, issuePEM(t, fixture.NewCA(t, "csrd e2e CA"), cr)); ans.Failure() != nil || ans.ID != made[0] {
		t.Fatalf("import through b of a's key %d: id %d, %v", made[0], ans.ID, ans.Failure())
	}
	if ans := b.client.Delete(ctx, made[1]); ans.Failure() != nil {
		t.Fatalf("delete through b of a's key %d: %v", made[1], ans.Failure())
	}
	if objs := objectsOn(t, view, db, made[1]); len(objs) != 0 {
		t.Errorf("the token after the delete through b: %v", objs)
	}
	rows, err := db.ListAudit(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if strings.Contains(r.Detail, "forwarded") {
			t.Errorf("a shared token needs no forwarding; audit row %d: %s %s", r.ID, r.Operation, r.Detail)
		}
	}

	// A generation in progress on a: its record (leased to a) and its key.
	kid, err := view.NewKeyID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, err := db.BeginKey(ctx, &store.KeyRecord{KeyID: kid, TokenLabel: label, TokenSerial: view.Serial(),
		KeyType: "ECDSA", Curve: "P-256"}, lifecycle.LabelPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := view.GenerateKeyPair(ctx, hsm.KeySpec{Type: hsm.KeyECDSA, Bits: 256, Curve: elliptic.P256()},
		hsm.KeyRef{ID: kid, Label: lifecycle.Label(id)}); err != nil {
		t.Fatal(err)
	}
	restart := func() {
		t.Helper()
		if err := b.d.stop(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		b.start(t)
		if !b.d.waitLog("reconciliation done", 15*time.Second) {
			t.Fatalf("b did not reconcile at start:\n%s", b.d.tail(20))
		}
	}
	restart()
	if rec, _ := db.Get(ctx, id); rec.State != store.StateGenerating || len(objectsOn(t, view, db, id)) == 0 {
		t.Fatalf("b's reconciliation touched a's generation in progress: %s, objects %v", rec.State, objectsOn(t, view, db, id))
	}

	// Once a is gone its generation is anyone's to finish: the control
	// that shows the lease, not chance, kept it alive above.
	a.d.kill()
	time.Sleep(fleetTimeout + fleetHeartbeat)
	restart()
	if rec, _ := db.Get(ctx, id); rec.State != store.StateFailed || len(objectsOn(t, view, db, id)) != 0 {
		t.Errorf("a dead node's generation after b's reconciliation: %s, objects %v", rec.State, objectsOn(t, view, db, id))
	}
}

// objectsOn lists the token objects of record id through view.
func objectsOn(t *testing.T, view *hsm.Token, db *store.Store, id int64) []hsm.ObjectClass {
	t.Helper()
	rec, err := db.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := view.ObjectsOf(context.Background(), hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel})
	if err != nil {
		t.Fatal(err)
	}
	return objs
}
