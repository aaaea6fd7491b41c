package lifecycle_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/csr"
	"github.com/csrd/csrd/csr/csrtest"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

func csrDER(t *testing.T, p string) []byte {
	t.Helper()
	b, _ := pem.Decode([]byte(p))
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("not a CSR PEM: %q", p)
	}
	return b.Bytes
}

// TestGenerateHybrid runs every ML-DSA level with RSA, ECC and Ed25519
// primaries through the use case on a real token and checks the CSR, the
// record and the sealed seed.
func TestGenerateHybrid(t *testing.T) {
	ctx := context.Background()
	db := openStore(t, filepath.Join(t.TempDir(), "csrd.db"))
	svc := lifecycle.New(lifecycle.HSMToken{Token: testToken}, db, policy.Default(), testLog)
	ensureKEK(t)
	primaries := map[string]policy.KeyRequest{
		"RSA-2048": {KeyType: "RSA", KeyLength: 2048},
		"P-384":    {KeyType: "ECC", Curve: "P-384"},
		"Ed25519":  {KeyType: "ED25519"},
	}
	sets := map[string]hsm.MLDSA{"ML-DSA-44": hsm.MLDSA44, "ML-DSA-65": hsm.MLDSA65, "ML-DSA-87": hsm.MLDSA87}
	for _, pName := range []string{"RSA-2048", "P-384", "Ed25519"} {
		for _, level := range []string{"ML-DSA-44", "ML-DSA-65", "ML-DSA-87"} {
			t.Run(pName+"+"+level, func(t *testing.T) {
				before, _ := testToken.CountObjects(ctx)
				kr := primaries[pName]
				kr.AlternativeKeyType = level
				res, err := svc.Generate(ctx, lifecycle.GenerateRequest{
					Subject: "CN=pq.example.com,O=csrd", SANs: map[string][]string{"dns": {"pq.example.com"}}, Key: kr,
				})
				if err != nil {
					t.Fatal(err)
				}
				der := csrDER(t, res.CSRPEM)
				if err := csrtest.VerifyPrimary(der); err != nil {
					t.Errorf("primary signature (Go): %v", err)
				}
				if _, err := csrtest.OpenSSLVerify(t.TempDir(), der); err != nil {
					t.Error(err)
				}
				if _, err := csrtest.VerifyAlt(der); err != nil {
					t.Fatalf("alternative signature (circl): %v", err)
				}
				r, _ := csrtest.Parse(der)
				if !r.AttributesSorted() {
					t.Error("attribute SET not in DER order")
				}

				rec, err := db.Get(ctx, res.ID)
				if err != nil {
					t.Fatal(err)
				}
				if rec.State != store.StatePending || rec.AltKeyType != level || rec.AltKeyStorage != store.AltStorageSealed ||
					rec.AltKeyLabel != "" || rec.AltKeyID != nil || len(rec.AltSealedSeed) == 0 {
					t.Fatalf("record: %+v", rec)
				}
				altSPKI, _ := r.Attribute(csrtest.OIDSubjectAltPublicKeyInfo)
				if sum := sha256.Sum256(altSPKI.FullBytes); !bytes.Equal(rec.AltSPKISHA256, sum[:]) {
					t.Error("record's alt_spki_sha256 is not the CSR's alternative SPKI")
				}
				// Only the token opens the seal, and it yields the CSR's key.
				k, err := testToken.OpenSealedMLDSA(ctx, sets[level], rec.AltSealedSeed, hsm.SealBinding{RecordID: rec.ID, Label: rec.KeyLabel})
				if err != nil {
					t.Fatal(err)
				}
				defer k.Wipe()
				spki, _ := csr.SPKI(k.Public())
				if !bytes.Equal(spki, altSPKI.FullBytes) {
					t.Error("unsealed seed derives another key than the CSR carries")
				}
				// Exactly the primary key pair was added to the token.
				if after, _ := testToken.CountObjects(ctx); after != before+2 {
					t.Errorf("token objects %d -> %d, want +2", before, after)
				}
				if err := testToken.DestroyKey(ctx, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// failingHybrid fails the last step of a hybrid Generate.
type failingHybrid struct{ *store.Store }

func (failingHybrid) CompleteHybridKey(context.Context, int64, string, []byte, store.AltCompletion, *store.AuditEntry) error {
	return errInjected
}

func TestGenerateHybridFailureDestroysAll(t *testing.T) {
	ctx := context.Background()
	ensureKEK(t)
	db := openStore(t, filepath.Join(t.TempDir(), "csrd.db"))
	before, _ := testToken.CountObjects(ctx)
	svc := lifecycle.New(lifecycle.HSMToken{Token: testToken}, failingHybrid{db}, policy.Default(), testLog)
	if _, err := svc.Generate(ctx, hybrid); !errors.Is(err, errInjected) {
		t.Fatalf("Generate error %v, want the injected one", err)
	}
	failed, err := db.ListByState(ctx, store.StateFailed)
	if err != nil || len(failed) != 1 {
		t.Fatalf("want one failed record: %v %v", failed, err)
	}
	if failed[0].AltSealedSeed != nil {
		t.Error("a failed record kept a sealed seed")
	}
	if after, _ := testToken.CountObjects(ctx); after != before {
		t.Errorf("token objects %d before, %d after", before, after)
	}
}

// TestSealedAltForbidden: a policy without sealed alternative keys refuses
// a hybrid request on a token without ML-DSA, before anything exists.
func TestSealedAltForbidden(t *testing.T) {
	ctx := context.Background()
	db := openStore(t, filepath.Join(t.TempDir(), "csrd.db"))
	strict, err := policy.Parse([]byte(`
Settings:
  Policies:
    AllowSealedAlternativeKeys: false
DefaultEnrollmentPatternId: 7
EnrollmentPatterns:
  - {Id: 7, Name: token-only, AllowedEnrollmentTypes: 4}
`), "token-only.yaml", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	before, _ := testToken.CountObjects(ctx)
	svc := lifecycle.New(lifecycle.HSMToken{Token: testToken}, db, strict, testLog)
	_, err = svc.Generate(ctx, hybrid)
	var pe *policy.Error
	if !errors.As(err, &pe) || len(pe.Violations) != 1 || pe.Violations[0].Rule != policy.RuleSealedAltKey {
		t.Fatalf("Generate = %v, want a %s policy refusal", err, policy.RuleSealedAltKey)
	}
	if !strings.Contains(pe.Message(), `enrollment pattern 7 ("token-only")`) || !strings.Contains(pe.Message(), testTok.Label) {
		t.Errorf("message %q names neither the policy nor the token", pe.Message())
	}
	if n, _ := db.CountByState(ctx); n[store.StateGenerating]+n[store.StateFailed]+n[store.StatePending] != 0 {
		t.Errorf("records written: %v", n)
	}
	if after, _ := testToken.CountObjects(ctx); after != before {
		t.Errorf("token objects %d before, %d after", before, after)
	}
	// Without an alternative key the same policy still generates.
	res, err := svc.Generate(ctx, lifecycle.GenerateRequest{Subject: "CN=x.example.com", SANs: map[string][]string{"dns": {"x.example.com"}}, Key: policy.KeyRequest{KeyType: "ED448"}})
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := db.Get(ctx, res.ID)
	_ = testToken.DestroyKey(ctx, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel})
}

// TestDestroyKeyMaterial: the one function that destroys everything a
// record names, as Delete will call it, repeatable.
func TestDestroyKeyMaterial(t *testing.T) {
	ctx := context.Background()
	ensureKEK(t)
	db := openStore(t, filepath.Join(t.TempDir(), "csrd.db"))
	svc := lifecycle.New(lifecycle.HSMToken{Token: testToken}, db, policy.Default(), testLog)
	before, _ := testToken.CountObjects(ctx)
	res, err := svc.Generate(ctx, hybrid)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := db.Get(ctx, res.ID)
	n, err := svc.DestroyKeyMaterial(ctx, rec)
	if err != nil || n != 1 {
		t.Fatalf("DestroyKeyMaterial = %d, %v; want the primary pair destroyed", n, err)
	}
	after, _ := db.Get(ctx, res.ID)
	if after.AltSealedSeed != nil {
		t.Error("sealed seed still in the record")
	}
	if _, err := testToken.FindKey(ctx, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}); !errors.Is(err, hsm.ErrNotFound) {
		t.Errorf("primary key still in the token: %v", err)
	}
	if got, _ := testToken.CountObjects(ctx); got != before {
		t.Errorf("token objects %d before, %d after", before, got)
	}
	// Again: nothing left, no error.
	if n, err := svc.DestroyKeyMaterial(ctx, rec); err != nil || n != 0 {
		t.Errorf("second DestroyKeyMaterial = %d, %v", n, err)
	}
}

// TestHybridReconcileAndDelete: a pending hybrid record with a sealed seed
// is neither lost nor an orphan to reconciliation, the sealing key is never
// an orphan (not even with DestroyOrphans), and Delete destroys the primary
// key and erases the seal.
func TestHybridReconcileAndDelete(t *testing.T) {
	ctx := context.Background()
	ensureKEK(t)
	db := openStore(t, filepath.Join(t.TempDir(), "csrd.db"))
	svc := lifecycle.New(lifecycle.HSMToken{Token: testToken}, db, policy.Default(), testLog)
	before, _ := testToken.CountObjects(ctx)
	res, err := svc.Generate(ctx, hybrid)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := svc.Reconcile(ctx, lifecycle.ReconcileOptions{DestroyOrphans: true})
	if err != nil {
		t.Fatalf("Reconcile with DestroyOrphans on a token holding the sealing key: %v", err)
	}
	for _, o := range rep.Orphans {
		if o.Ref.Label == hsm.KEKLabel || o.Ref.Label == lifecycle.Label(res.ID) {
			t.Errorf("orphan %v", o)
		}
	}
	if len(rep.Lost) != 0 {
		t.Errorf("lost: %+v", rep.Lost)
	}
	rec, _ := db.Get(ctx, res.ID)
	if rec.State != store.StatePending || len(rec.AltSealedSeed) == 0 {
		t.Fatalf("after reconcile: %s, seal %d bytes", rec.State, len(rec.AltSealedSeed))
	}
	// The sealing key is still there and still opens the seal.
	if _, err := testToken.OpenSealedMLDSA(ctx, hsm.MLDSA65, rec.AltSealedSeed, hsm.SealBinding{RecordID: rec.ID, Label: rec.KeyLabel}); err != nil {
		t.Fatalf("seal after reconcile: %v", err)
	}

	if err := svc.Delete(ctx, res.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	rec, _ = db.Get(ctx, res.ID)
	if rec.State != store.StateDeleted || rec.AltSealedSeed != nil {
		t.Errorf("after Delete: %s, seal %d bytes", rec.State, len(rec.AltSealedSeed))
	}
	if after, _ := testToken.CountObjects(ctx); after != before {
		t.Errorf("token objects %d before, %d after Delete", before, after)
	}
}
