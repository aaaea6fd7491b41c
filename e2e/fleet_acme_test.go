package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/store"
)

// TestFleetEnrollment: on two nodes with a token each, the enrollment
// operations sent to node a for keys in b's token are authorised by a and
// carried out by b — Enrollment/CSR marries the certificate in b's token,
// renew makes the new key there, retire destroys it there — a then
// enrolls a key of its own through an account of its own with the same
// CA (its key on a's token), and with b dead an enrollment of b's key is a
// 503 naming b's token.
func TestFleetEnrollment(t *testing.T) {
	fullRunOnly(t, "two nodes on one PostgreSQL enrolling with a CA (Pebble)")
	p := fixture.StartPebble(t, fixture.PebbleOptions{AlwaysValid: true})
	chain := filepath.Join(t.TempDir(), "chain-roots.pem")
	if err := os.WriteFile(chain, p.ChainRoots(t), 0o600); err != nil {
		t.Fatal(err)
	}
	pg := fixture.SharedPostgres(t)
	nodes, dsn := newFleetWith(t, pg, []string{"cas:", "  - name: pebble", "    acme:",
		"      directory: " + p.Directory, "      roots_file: " + p.RootsFile, "      chain_roots_file: " + chain,
		"      contact: [mailto:pki@example.test]"}, "a", "b")
	a, b := nodes[0], nodes[1]
	ctx := context.Background()
	db, err := store.Open(ctx, dsn, store.WithPassword(pg.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	objects := func(id int64) []hsm.ObjectClass {
		t.Helper()
		rec, err := db.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := b.in.View.ObjectsOf(ctx, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel})
		if err != nil {
			t.Fatal(err)
		}
		return objs
	}

	id, csr := generateKey(t, b.d, "fleet-enroll.example.test")
	spare, spareCSR := generateKey(t, b.d, "fleet-spare.example.test")
	status, ans, body := enrollCSR(t, a.d, csr)
	if status != 200 || ans.CertificateInformation.RequestDisposition != "ISSUED" || int64(ans.CertificateInformation.KeyfactorID) != id {
		t.Fatalf("Enrollment/CSR of b's key sent to a: %d %s", status, body)
	}
	if objs := objects(id); !slices.Contains(objs, hsm.ClassCertificate) {
		t.Errorf("b's token after the forwarded enrollment: %v; want key pair and certificate", objs)
	}
	checkForwardAudit(t, db, id, "a", "b")

	if status, body, _ := kf(t, a.d, "POST", fmt.Sprintf("/csrd/v1/keys/%d/renew", id), "", nil); status != 202 {
		t.Fatalf("renew of b's key sent to a: %d %s", status, body)
	}
	var renewed int64
	waitFor(t, 30*time.Second, "the renewal done by b", func() bool {
		r, err := db.GetRenewal(ctx, id)
		if err != nil || r.State != store.RenewalRenewed {
			return false
		}
		renewed = r.NewRecordID
		return true
	})
	if rec, _ := db.Get(ctx, renewed); rec.State != store.StateMarried || rec.TokenSerial != keyOnB(t, db, id) {
		t.Errorf("the renewal's record %d: %s on token %s", renewed, rec.State, rec.TokenSerial)
	}

	if status, body, _ := kf(t, a.d, "POST", fmt.Sprintf("/csrd/v1/keys/%d/retire", renewed), "", nil); status != 200 {
		t.Fatalf("retire of b's key sent to a: %d %s", status, body)
	}
	if rec, _ := db.Get(ctx, renewed); rec.State != store.StateRetired {
		t.Errorf("record %d is %s after the forwarded retire", renewed, rec.State)
	}
	if objs := objects(renewed); len(objs) != 0 {
		t.Errorf("b's token after the forwarded retire: %v; want the key gone", objs)
	}

	own, ownCSR := generateKey(t, a.d, "fleet-own.example.test")
	if status, ans, body := enrollCSR(t, a.d, ownCSR); status != 200 || ans.CertificateInformation.RequestDisposition != "ISSUED" ||
		int64(ans.CertificateInformation.KeyfactorID) != own {
		t.Fatalf("Enrollment/CSR of a's own key on a: %d %s", status, body)
	}
	checkAccountsPerToken(t, db, a, b)

	b.d.kill()
	status, _, body = enrollCSR(t, a.d, spareCSR)
	if status != 503 || !strings.Contains(string(body), "fleet-b") {
		t.Fatalf("enrollment of a dead node's key: %d %s; want 503 naming token fleet-b", status, body)
	}
	if rec, _ := db.Get(ctx, spare); rec.State != store.StatePending {
		t.Errorf("the refused enrollment's key is %s", rec.State)
	}
}

// checkAccountsPerToken: each node's token holds its own ACME account
// with the CA, registered, its key the one the row names.
func checkAccountsPerToken(t *testing.T, db *store.Store, nodes ...*fleetNode) {
	t.Helper()
	ctx := context.Background()
	urls := map[string]bool{}
	for _, n := range nodes {
		v := n.in.View
		acct, err := db.GetAccount(ctx, store.AccountOf{CA: "pebble", TokenLabel: v.Label(), TokenSerial: v.Serial()})
		if err != nil || acct.URL == "" || urls[acct.URL] {
			t.Errorf("node %s's account: %+v, %v; want one registered account per token", n.name, acct, err)
			continue
		}
		urls[acct.URL] = true
		if _, err := v.FindKey(ctx, hsm.KeyRef{ID: acct.KeyID, Label: acct.KeyLabel}); err != nil {
			t.Errorf("node %s's account key on its token: %v", n.name, err)
		}
	}
}

// keyOnB is the token serial of record id.
func keyOnB(t *testing.T, db *store.Store, id int64) string {
	t.Helper()
	rec, err := db.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return rec.TokenSerial
}
