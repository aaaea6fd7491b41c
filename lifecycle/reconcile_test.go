package lifecycle_test

import (
	"bytes"
	"context"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

// TestReconcileOrphansAndLost works on its own token, changing it behind
// csrd's back: a key pair with a csrd label but no record (orphan), one
// whose label is not csrd's form, a pending key destroyed (lost), a married
// key's certificate object destroyed (restored), and a healthy married key
// (left alone).
func TestReconcileOrphansAndLost(t *testing.T) {
	ctx := context.Background()
	svc, db := newService(t, reconToken)
	ca := fixture.NewCA(t, "Recon CA")
	nb, na := valid()
	p256 := hsm.KeySpec{Type: hsm.KeyECDSA, Curve: elliptic.P256()}

	healthy := generate(t, svc, "CN=healthy", ecc256, nil)
	if _, err := svc.Import(ctx, lifecycle.ImportRequest{Certificate: fixture.PEM(ca.IssueCSR(t, healthy.CSRPEM, nb, na))}); err != nil {
		t.Fatal(err)
	}
	noCert := generate(t, svc, "CN=cert-removed", ecc256, nil)
	if _, err := svc.Import(ctx, lifecycle.ImportRequest{Certificate: fixture.PEM(ca.IssueCSR(t, noCert.CSRPEM, nb, na))}); err != nil {
		t.Fatal(err)
	}
	lost := generate(t, svc, "CN=will-be-lost", ecc256, nil)
	lostMarried := generate(t, svc, "CN=married-then-lost", ecc256, nil)
	if _, err := svc.Import(ctx, lifecycle.ImportRequest{Certificate: fixture.PEM(ca.IssueCSR(t, lostMarried.CSRPEM, nb, na))}); err != nil {
		t.Fatal(err)
	}
	refOf := func(id int64) hsm.KeyRef {
		r, err := db.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return hsm.KeyRef{ID: r.KeyID, Label: r.KeyLabel}
	}

	// Behind csrd's back.
	orphanRef := hsm.KeyRef{ID: []byte("orphan-id-000001"), Label: lifecycle.Label(9000)}
	oddRef := hsm.KeyRef{ID: []byte("odd"), Label: lifecycle.LabelPrefix + "manual"}
	for _, ref := range []hsm.KeyRef{orphanRef, oddRef} {
		if _, err := reconToken.GenerateKeyPair(ctx, p256, ref); err != nil {
			t.Fatal(err)
		}
	}
	foreign := hsm.KeyRef{ID: []byte("foreign"), Label: "someone-else"} // not csrd's: never touched
	if _, err := reconToken.GenerateKeyPair(ctx, p256, foreign); err != nil {
		t.Fatal(err)
	}
	destroyAtEnd(t, reconToken, foreign)
	destroyClass(t, refOf(lost.ID), hsm.ClassPrivateKey, hsm.ClassPublicKey)
	destroyClass(t, refOf(lostMarried.ID), hsm.ClassPrivateKey)
	destroyClass(t, refOf(noCert.ID), hsm.ClassCertificate)
	before, _ := reconToken.CountObjects(ctx)

	rep, err := svc.Reconcile(ctx, lifecycle.ReconcileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantLost := []lifecycle.LostKey{
		{ID: lost.ID, Label: lost.KeyLabel, Was: store.StatePending, Missing: []hsm.ObjectClass{hsm.ClassPrivateKey, hsm.ClassPublicKey}},
		{ID: lostMarried.ID, Label: lostMarried.KeyLabel, Was: store.StateMarried, Missing: []hsm.ObjectClass{hsm.ClassPrivateKey}},
	}
	if fmt.Sprint(rep.Lost) != fmt.Sprint(wantLost) {
		t.Errorf("lost = %v, want %v", rep.Lost, wantLost)
	}
	for _, id := range []int64{lost.ID, lostMarried.ID} {
		if r, _ := db.Get(ctx, id); r.State != store.StateLost {
			t.Errorf("record %d is %s, want lost", id, r.State)
		}
	}
	if fmt.Sprint(rep.CertsRestored) != fmt.Sprint([]int64{noCert.ID}) {
		t.Errorf("certificates restored = %v, want [%d]", rep.CertsRestored, noCert.ID)
	}
	if certs, _ := reconToken.Certificates(ctx, refOf(noCert.ID)); len(certs) != 1 {
		t.Errorf("restored certificate objects: %d", len(certs))
	}
	// Orphans: the two made behind csrd's back, and what is left of the
	// married-then-lost key (its public key and certificate).
	orphans := map[string]lifecycle.Orphan{}
	for _, o := range rep.Orphans {
		orphans[o.Ref.Label] = o
		if o.Destroyed {
			t.Errorf("orphan %v destroyed without DestroyOrphans", o)
		}
	}
	for label, reason := range map[string]string{
		orphanRef.Label:      "no record 9000 exists",
		oddRef.Label:         "label is not one csrd gives its keys",
		lostMarried.KeyLabel: fmt.Sprintf("record %d is lost", lostMarried.ID),
	} {
		if o, ok := orphans[label]; !ok || o.Reason != reason {
			t.Errorf("orphan %s = %+v, want reason %q", label, o, reason)
		}
	}
	if len(rep.Orphans) != 3 {
		t.Errorf("orphans = %v, want 3", rep.Orphans)
	}
	if n, _ := reconToken.CountObjects(ctx); n != before+1 { // +1: the restored certificate
		t.Errorf("token objects %d -> %d: reconcile without DestroyOrphans destroyed something", before, n)
	}
	if r, _ := db.Get(ctx, healthy.ID); r.State != store.StateMarried {
		t.Errorf("healthy record became %s", r.State)
	}

	// With DestroyOrphans they go, and only they: not the one whose label
	// csrd never gives (see TestReconcileDestroysOnlyCsrdLabels).
	rep, err = svc.Reconcile(ctx, lifecycle.ReconcileOptions{DestroyOrphans: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OrphansDestroyed != 2 || len(rep.Lost) != 0 {
		t.Errorf("second pass: %d orphans destroyed, %d lost; want 2, 0", rep.OrphansDestroyed, len(rep.Lost))
	}
	for _, ref := range []hsm.KeyRef{orphanRef, refOf(lostMarried.ID)} {
		if cs, _ := reconToken.ObjectsOf(ctx, ref); len(cs) != 0 {
			t.Errorf("orphan %v still has %v", ref, cs)
		}
	}
	for ref, want := range map[*hsm.KeyRef]int{&foreign: 2, &oddRef: 2, ptr(refOf(healthy.ID)): 3, ptr(refOf(noCert.ID)): 3} {
		if cs, _ := reconToken.ObjectsOf(ctx, *ref); len(cs) != want {
			t.Errorf("%v has %v after destroying orphans, want its %d objects", *ref, cs, want)
		}
	}
	rep, err = svc.Reconcile(ctx, lifecycle.ReconcileOptions{})
	if err != nil || len(rep.Orphans) != 1 || rep.Orphans[0].Ref.Label != oddRef.Label || len(rep.Lost)+len(rep.CertsRestored) != 0 || rep.Records != 2 {
		t.Errorf("third pass is not clean but for the foreign label: %+v, %v", rep, err)
	}
	for _, ref := range []hsm.KeyRef{refOf(healthy.ID), refOf(noCert.ID), oddRef} {
		_ = reconToken.DestroyKey(ctx, ref)
	}
}

// TestReconcileMinAge: with MinAge, a record just made is left alone even if
// its key is missing (a running csrd may be in the middle of it).
func TestReconcileMinAge(t *testing.T) {
	ctx := context.Background()
	svc, db := newService(t, reconToken)
	res := generate(t, svc, "CN=young", ecc256, nil)
	rec, _ := db.Get(ctx, res.ID)
	ref := hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}
	if err := reconToken.DestroyKey(ctx, ref); err != nil {
		t.Fatal(err)
	}
	rep, err := svc.Reconcile(ctx, lifecycle.ReconcileOptions{MinAge: time.Hour})
	if err != nil || len(rep.Lost) != 0 || rep.InProgress != 1 {
		t.Errorf("with MinAge: %+v, %v; want the record skipped", rep, err)
	}
	if r, _ := db.Get(ctx, res.ID); r.State != store.StatePending {
		t.Errorf("young record became %s", r.State)
	}
	rep, err = svc.Reconcile(ctx, lifecycle.ReconcileOptions{})
	if err != nil || len(rep.Lost) != 1 {
		t.Errorf("without MinAge: %+v, %v; want it lost", rep, err)
	}
}

// TestReconcileLostHalf: a pending record whose key pair lost either half
// (or both) in the token is marked lost, saying which half is gone, in the
// report, the record and the log line's counts; what is left of the pair is
// an orphan, kept until DestroyOrphans. SoftHSM's file store loses an object
// that way when the process dies while writing it (see the README's
// Reliability section).
func TestReconcileLostHalf(t *testing.T) {
	cases := []struct {
		name              string
		destroy           []hsm.ObjectClass // what goes missing
		left              []hsm.ObjectClass // what the token still has
		what              string
		lostPriv, lostPub int
	}{
		{"private key", []hsm.ObjectClass{hsm.ClassPrivateKey}, []hsm.ObjectClass{hsm.ClassPublicKey},
			"the private key is gone from the token", 1, 0},
		{"public key", []hsm.ObjectClass{hsm.ClassPublicKey}, []hsm.ObjectClass{hsm.ClassPrivateKey},
			"the public key is gone from the token", 0, 1},
		{"both", []hsm.ObjectClass{hsm.ClassPrivateKey, hsm.ClassPublicKey}, nil,
			"the private and public keys are gone from the token", 1, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			var logBuf bytes.Buffer
			db := openStore(t, filepath.Join(t.TempDir(), "csrd.db"))
			svc := lifecycle.New(lifecycle.HSMToken{Token: reconToken}, db, policy.Default(), zerolog.New(&logBuf))
			res := generate(t, svc, "CN=half-"+strings.ReplaceAll(tc.name, " ", "-"), ecc256, nil)
			rec, _ := db.Get(ctx, res.ID)
			ref := hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}
			t.Cleanup(func() { _ = reconToken.DestroyKey(context.Background(), ref) })
			destroyClass(t, ref, tc.destroy...)

			rep, err := svc.Reconcile(ctx, lifecycle.ReconcileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want := []lifecycle.LostKey{{ID: res.ID, Label: res.KeyLabel, Was: store.StatePending, Missing: tc.destroy}}
			if !reflect.DeepEqual(rep.Lost, want) {
				t.Errorf("lost = %v, want %v", rep.Lost, want)
			}
			if len(rep.Lost) == 1 && rep.Lost[0].What() != tc.what {
				t.Errorf("What() = %q, want %q", rep.Lost[0].What(), tc.what)
			}
			if r, _ := db.Get(ctx, res.ID); r.State != store.StateLost || !strings.Contains(r.FailReason, tc.what) {
				t.Errorf("record is %s (%q), want lost saying %q", r.State, r.FailReason, tc.what)
			}
			line := reconcileLine(t, logBuf.Bytes())
			if line["lost"] != 1.0 || line["lost_private_key"] != float64(tc.lostPriv) || line["lost_public_key"] != float64(tc.lostPub) {
				t.Errorf("reconciliation log line %v: want lost 1, lost_private_key %d, lost_public_key %d", line, tc.lostPriv, tc.lostPub)
			}
			var orphans []lifecycle.Orphan
			for _, o := range rep.Orphans {
				if o.Ref.Label == ref.Label {
					orphans = append(orphans, o)
				}
			}
			switch {
			case len(tc.left) == 0 && len(orphans) != 0:
				t.Errorf("nothing is left of the pair, yet orphans %v", orphans)
			case len(tc.left) > 0 && (len(orphans) != 1 || fmt.Sprint(orphans[0].Classes) != fmt.Sprint(tc.left) ||
				orphans[0].Reason != fmt.Sprintf("record %d is lost", res.ID) || orphans[0].Destroyed):
				t.Errorf("orphans %v, want the surviving %v of lost record %d, kept", orphans, tc.left, res.ID)
			}
			if cs, _ := reconToken.ObjectsOf(ctx, ref); fmt.Sprint(cs) != fmt.Sprint(tc.left) {
				t.Errorf("without DestroyOrphans the token has %v, want %v", cs, tc.left)
			}

			rep, err = svc.Reconcile(ctx, lifecycle.ReconcileOptions{DestroyOrphans: true})
			if err != nil || len(rep.Lost) != 0 || rep.OrphansDestroyed != len(orphans) {
				t.Errorf("with DestroyOrphans: %+v, %v; want %d orphans destroyed, nothing newly lost", rep, err, len(orphans))
			}
			if cs, _ := reconToken.ObjectsOf(ctx, ref); len(cs) != 0 {
				t.Errorf("after DestroyOrphans the token still has %v", cs)
			}
		})
	}
}

// reconcileLine returns the fields of the "reconciliation done" log line.
func reconcileLine(t *testing.T, log []byte) map[string]any {
	t.Helper()
	for _, l := range bytes.Split(log, []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(l, &m) == nil && m["message"] == "reconciliation done" {
			return m
		}
	}
	t.Fatalf("no reconciliation log line in %s", log)
	return nil
}

// destroyClass destroys the objects of the given classes under ref, as an
// operator with pkcs11-tool would.
func destroyClass(t *testing.T, ref hsm.KeyRef, classes ...hsm.ObjectClass) {
	t.Helper()
	if err := destroyObjects(reconToken, ref, classes...); err != nil {
		t.Fatal(err)
	}
}

// TestCrashDeleteAndImport SIGKILLs a real process after each step of
// Delete and Import, then proves that start-up reconciliation finishes the
// operation: the key is gone and the record deleted, or the certificate is
// in the token and the record married.
func TestCrashDeleteAndImport(t *testing.T) {
	ca := fixture.NewCA(t, "Crash CA")
	cases := []struct {
		op, step  string
		wantState store.State
		keyLeft   bool // the key is still in the token when the process dies
		certLeft  bool // the certificate object is in the token when it dies
	}{
		{"delete", "delete-recorded", store.StateDeleted, true, false},
		{"delete", "delete-destroyed", store.StateDeleted, false, false},
		{"import", "marry-recorded", store.StateMarried, true, false},
		{"import", "marry-written", store.StateMarried, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.step, func(t *testing.T) {
			ctx := context.Background()
			dbPath := filepath.Join(t.TempDir(), "csrd.db")
			db := openStore(t, dbPath)
			svc := lifecycle.New(lifecycle.HSMToken{Token: testToken}, db, policy.Default(), testLog)
			res := generate(t, svc, "CN=crash-"+tc.step, ecc256, nil)
			rec, _ := db.Get(ctx, res.ID)
			ref := hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}
			destroyAtEnd(t, testToken, ref)
			arg := fmt.Sprint(res.ID)
			if tc.op == "import" {
				nb, na := valid()
				arg = filepath.Join(t.TempDir(), "cert.pem")
				if err := os.WriteFile(arg, []byte(fixture.PEM(ca.IssueCSR(t, res.CSRPEM, nb, na))), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			runCrashChild(t, tc.step, dbPath, envCrashOp+"="+tc.op, envCrashArg+"="+arg)

			rec, _ = db.Get(ctx, res.ID)
			if rec.State != store.StatePending || rec.Intent == store.IntentNone {
				t.Fatalf("after the crash the record is %s/%q; want pending with its intent", rec.State, rec.Intent)
			}
			classes, _ := testToken.ObjectsOf(ctx, ref)
			if hasClass(classes, hsm.ClassPrivateKey) != tc.keyLeft || hasClass(classes, hsm.ClassCertificate) != tc.certLeft {
				t.Fatalf("after the crash the token has %v", classes)
			}

			rep, err := svc.Reconcile(ctx, lifecycle.ReconcileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.DeletesFinished+rep.MarriagesFinished != 1 {
				t.Errorf("reconcile report %+v: want one operation finished", rep)
			}
			rec, _ = db.Get(ctx, res.ID)
			if rec.State != tc.wantState || rec.Intent != store.IntentNone {
				t.Errorf("after reconcile the record is %s/%q, want %s", rec.State, rec.Intent, tc.wantState)
			}
			classes, _ = testToken.ObjectsOf(ctx, ref)
			switch tc.wantState {
			case store.StateDeleted:
				if len(classes) != 0 {
					t.Errorf("deleted key still has objects %v", classes)
				}
			case store.StateMarried:
				certs, _ := testToken.Certificates(ctx, ref)
				if len(certs) != 1 || !hasClass(classes, hsm.ClassPrivateKey) {
					t.Errorf("married key: objects %v, %d certificates", classes, len(certs))
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func hasClass(cs []hsm.ObjectClass, c hsm.ObjectClass) bool {
	for _, v := range cs {
		if v == c {
			return true
		}
	}
	return false
}

// TestOtherToken: a record whose key lives on another token is neither
// deleted, married, marked lost nor failed by a Service on this token, whose
// lookups would only find "nothing".
func TestOtherToken(t *testing.T) {
	ctx := context.Background()
	here, db := newService(t, testToken)
	res := generate(t, here, "CN=elsewhere", ecc256, nil)
	interrupted := generate(t, here, "CN=elsewhere-too", ecc256, nil)
	rec, _ := db.Get(ctx, res.ID)
	ref := hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}
	irec, _ := db.Get(ctx, interrupted.ID)
	destroyAtEnd(t, testToken, ref)
	destroyAtEnd(t, testToken, hsm.KeyRef{ID: irec.KeyID, Label: irec.KeyLabel})
	if err := db.BeginDelete(ctx, interrupted.ID, nil); err != nil { // as if a delete was interrupted
		t.Fatal(err)
	}
	there := lifecycle.New(lifecycle.HSMToken{Token: reconToken}, db, policy.Default(), testLog)

	if err := there.Delete(ctx, res.ID, nil, nil); !errors.Is(err, lifecycle.ErrConflict) || !strings.Contains(err.Error(), "on token") {
		t.Errorf("Delete from another token = %v, want ErrConflict", err)
	}
	rep, err := there.Reconcile(ctx, lifecycle.ReconcileOptions{})
	if err != nil || rep.OtherToken != 2 || len(rep.Lost) != 0 || rep.DeletesFinished != 0 {
		t.Errorf("reconcile from another token: %+v, %v", rep, err)
	}
	for _, id := range []int64{res.ID, interrupted.ID} {
		if r, _ := db.Get(ctx, id); r.State != store.StatePending {
			t.Errorf("record %d became %s", id, r.State)
		}
	}
	if _, err := testToken.FindKey(ctx, ref); err != nil {
		t.Errorf("the key on its own token: %v", err)
	}
}
