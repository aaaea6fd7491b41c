package lifecycle_test

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

// newService returns a Service on a fresh database and the given token.
func newService(t *testing.T, tok *hsm.Token) (*lifecycle.Service, *store.Store) {
	t.Helper()
	db := openStore(t, filepath.Join(t.TempDir(), "csrd.db"))
	return lifecycle.New(lifecycle.HSMToken{Token: tok}, db, policy.Default(), testLog), db
}

func generate(t *testing.T, svc *lifecycle.Service, subject string, key policy.KeyRequest, sans map[string][]string) *lifecycle.GenerateResult {
	t.Helper()
	res, err := svc.Generate(context.Background(), lifecycle.GenerateRequest{Subject: subject, Key: key, SANs: sans})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

var ecc256 = policy.KeyRequest{KeyType: "ECC", KeyLength: 256}

func TestPendingListAndGet(t *testing.T) {
	ctx := context.Background()
	svc, _ := newService(t, testToken)
	a := generate(t, svc, "CN=alpha.example.com,O=Example", ecc256, map[string][]string{"dns": {"alpha.example.com"}, "ip4": {"192.0.2.1"}})
	b := generate(t, svc, "CN=beta.example.com", policy.KeyRequest{KeyType: "ECC", Curve: "P-384"}, nil)
	c := generate(t, svc, "CN=gamma.example.org", ecc256, nil)
	t.Cleanup(func() {
		for _, r := range []*lifecycle.GenerateResult{a, b, c} {
			_ = svc.Delete(ctx, r.ID, nil, nil)
		}
	})

	page, total, err := svc.ListPending(ctx, store.PendingQuery{Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	if total != 3 || len(page) != 3 || page[0].ID != a.ID || page[2].ID != c.ID {
		t.Fatalf("ListPending = %d of %d: %+v", len(page), total, page)
	}
	wantSummary := []string{"Subject: CN=alpha.example.com,O=Example", "SAN: DNS:alpha.example.com", "SAN: IP:192.0.2.1",
		"Key: ECC P-256 (256 bits)", "Hash: SHA256"}
	if !reflect.DeepEqual(page[0].Summary, wantSummary) {
		t.Errorf("summary = %q\nwant      %q", page[0].Summary, wantSummary)
	}
	if got := page[1].Summary; got[len(got)-1] != "Hash: SHA384" || got[len(got)-2] != "Key: ECC P-384 (384 bits)" {
		t.Errorf("P-384 summary = %q", got)
	}
	if page[0].CSRPEM != a.CSRPEM || page[0].RequestTime.IsZero() {
		t.Error("pending entry lacks its CSR or request time")
	}
	desc, _, _ := svc.ListPending(ctx, store.PendingQuery{Sort: store.SortByID, Descending: true, Limit: 2})
	if len(desc) != 2 || desc[0].ID != c.ID || desc[1].ID != b.ID {
		t.Errorf("id descending, 2 per page = %+v", desc)
	}
	filtered, n, _ := svc.ListPending(ctx, store.PendingQuery{SubjectContains: "EXAMPLE.COM", Limit: 50})
	if n != 2 || len(filtered) != 2 || filtered[1].ID != b.ID {
		t.Errorf("subject filter = %d: %+v", n, filtered)
	}

	got, err := svc.GetPending(ctx, b.ID, nil)
	if err != nil || got != b.CSRPEM {
		t.Errorf("GetPending = %q, %v", got, err)
	}
	if _, err := svc.GetPending(ctx, 9999, nil); !errors.Is(err, lifecycle.ErrNotFound) {
		t.Errorf("GetPending(unknown) = %v, want ErrNotFound", err)
	}
}

// TestDelete proves the key is really gone from the token: the object count
// drops by the key pair and a direct lookup finds nothing.
func TestDelete(t *testing.T) {
	ctx := context.Background()
	svc, db := newService(t, testToken)
	res := generate(t, svc, "CN=delete-me", ecc256, nil)
	rec, _ := db.Get(ctx, res.ID)
	ref := hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}
	before, _ := testToken.CountObjects(ctx)

	if err := svc.Delete(ctx, res.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	if after, _ := testToken.CountObjects(ctx); after != before-2 {
		t.Errorf("token objects %d -> %d, want the key pair (2) gone", before, after)
	}
	if classes, err := testToken.ObjectsOf(ctx, ref); err != nil || len(classes) != 0 {
		t.Errorf("direct lookup after delete: %v, %v", classes, err)
	}
	if _, err := testToken.FindKey(ctx, ref); !errors.Is(err, hsm.ErrNotFound) {
		t.Errorf("FindKey after delete = %v, want ErrNotFound", err)
	}
	if rec, _ := db.Get(ctx, res.ID); rec.State != store.StateDeleted || rec.Intent != store.IntentNone {
		t.Errorf("record after delete: %s/%q", rec.State, rec.Intent)
	}
	for name, err := range map[string]error{
		"get":            func() error { _, err := svc.GetPending(ctx, res.ID, nil); return err }(),
		"delete again":   svc.Delete(ctx, res.ID, nil, nil),
		"delete unknown": svc.Delete(ctx, 4242, nil, nil),
	} {
		if !errors.Is(err, lifecycle.ErrNotFound) {
			t.Errorf("%s = %v, want ErrNotFound", name, err)
		}
	}
	if err := svc.Delete(ctx, res.ID, nil, nil); !strings.Contains(err.Error(), "deleted") {
		t.Errorf("delete again says %q; it should say the request is deleted", err)
	}
}

func TestDeleteMany(t *testing.T) {
	ctx := context.Background()
	svc, db := newService(t, testToken)
	var ids []int64
	for _, cn := range []string{"CN=bulk1", "CN=bulk2", "CN=bulk3"} {
		ids = append(ids, generate(t, svc, cn, ecc256, nil).ID)
	}
	before, _ := testToken.CountObjects(ctx)

	// One bad id: nothing is deleted and the error names it.
	err := svc.DeleteMany(ctx, []int64{ids[0], 777, ids[1]}, nil, nil)
	if !errors.Is(err, lifecycle.ErrNotFound) || !strings.Contains(err.Error(), "777") || !strings.Contains(err.Error(), "nothing was deleted") {
		t.Fatalf("DeleteMany with a bad id = %v", err)
	}
	if n, _ := testToken.CountObjects(ctx); n != before {
		t.Errorf("objects %d -> %d after a refused bulk delete", before, n)
	}
	for _, id := range ids {
		if rec, _ := db.Get(ctx, id); rec.State != store.StatePending {
			t.Errorf("record %d is %s after a refused bulk delete", id, rec.State)
		}
	}

	if err := svc.DeleteMany(ctx, []int64{ids[2], ids[0], ids[1], ids[0]}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if n, _ := testToken.CountObjects(ctx); n != before-6 {
		t.Errorf("objects %d -> %d, want 3 key pairs gone", before, n)
	}
	for _, id := range ids {
		if rec, _ := db.Get(ctx, id); rec.State != store.StateDeleted {
			t.Errorf("record %d is %s, want deleted", id, rec.State)
		}
	}
}

var rsa2048 = policy.KeyRequest{KeyType: "RSA", KeyLength: 2048}
