package lifecycle_test

import (
	"context"
	"crypto/elliptic"
	"testing"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
)

// TestReconcileDestroysOnlyCsrdLabels: the orphan sweep destroys only
// objects whose label has exactly the form csrd gives its keys. Key pairs
// that merely share the prefix — the TLS key label an operator may choose,
// labels with leading zeros or extra suffixes — are reported as foreign and
// kept, with DestroyOrphans, every time.
func TestReconcileDestroysOnlyCsrdLabels(t *testing.T) {
	ctx := context.Background()
	svc, _ := newService(t, reconToken)
	p256 := hsm.KeySpec{Type: hsm.KeyECDSA, Curve: elliptic.P256()}
	cases := []struct {
		ref     hsm.KeyRef
		destroy bool
	}{
		{hsm.KeyRef{ID: []byte("orphan-8000"), Label: lifecycle.Label(8000)}, true},
		{hsm.KeyRef{ID: []byte("orphan-8001-alt"), Label: lifecycle.Label(8001) + "-alt"}, true},
		{hsm.KeyRef{ID: []byte("tls"), Label: "csrd-tls"}, false},
		{hsm.KeyRef{ID: []byte("zero"), Label: "csrd-08002"}, false},
		{hsm.KeyRef{ID: []byte("suffix"), Label: "csrd-8003-old"}, false},
		{hsm.KeyRef{ID: []byte("altalt"), Label: "csrd-8004-alt-alt"}, false},
		{hsm.KeyRef{ID: []byte("empty"), Label: "csrd-"}, false},
	}
	for _, tc := range cases {
		if _, err := reconToken.GenerateKeyPair(ctx, p256, tc.ref); err != nil {
			t.Fatal(err)
		}
		destroyAtEnd(t, reconToken, tc.ref)
	}
	for pass := 1; pass <= 2; pass++ {
		rep, err := svc.Reconcile(ctx, lifecycle.ReconcileOptions{DestroyOrphans: true})
		if err != nil {
			t.Fatal(err)
		}
		reported := map[string]lifecycle.Orphan{}
		for _, o := range rep.Orphans {
			reported[o.Ref.Label] = o
		}
		for _, tc := range cases {
			o, listed := reported[tc.ref.Label]
			left, err := reconToken.ObjectsOf(ctx, tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.destroy && pass == 1 && (!listed || !o.Destroyed || o.Foreign || len(left) != 0):
				t.Errorf("pass %d: %s: reported %v (%+v), %d objects left; want destroyed", pass, tc.ref.Label, listed, o, len(left))
			case tc.destroy && pass == 2 && listed:
				t.Errorf("pass %d: %s reported again: %+v", pass, tc.ref.Label, o)
			case !tc.destroy && (!listed || o.Destroyed || !o.Foreign || len(left) != 2):
				t.Errorf("pass %d: %s: reported %v (%+v), %d objects left; want reported as foreign and kept", pass, tc.ref.Label, listed, o, len(left))
			}
		}
	}
}

// TestReconcileKeepsTLSKey: the object tls.key_file names (ReconcileOptions.Keep)
// is never an orphan, not even with a label of csrd's own form, and a URI
// for another token protects nothing here.
func TestReconcileKeepsTLSKey(t *testing.T) {
	ctx := context.Background()
	svc, _ := newService(t, reconToken)
	p256 := hsm.KeySpec{Type: hsm.KeyECDSA, Curve: elliptic.P256()}
	tlsKey := hsm.KeyRef{ID: []byte("tls-key"), Label: lifecycle.Label(8100)}
	other := hsm.KeyRef{ID: []byte("elsewhere"), Label: lifecycle.Label(8101)}
	for _, ref := range []hsm.KeyRef{tlsKey, other} {
		if _, err := reconToken.GenerateKeyPair(ctx, p256, ref); err != nil {
			t.Fatal(err)
		}
		destroyAtEnd(t, reconToken, ref)
	}
	keep := []hsm.URI{
		{Token: reconLabel, Object: tlsKey.Label, Type: "private"},
		{Token: "another-token", Object: other.Label},
	}
	rep, err := svc.Reconcile(ctx, lifecycle.ReconcileOptions{DestroyOrphans: true, Keep: keep})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range rep.Orphans {
		if o.Ref.Label == tlsKey.Label {
			t.Errorf("the kept TLS key was reported as an orphan: %+v", o)
		}
	}
	if cs, _ := reconToken.ObjectsOf(ctx, tlsKey); len(cs) != 2 {
		t.Errorf("TLS key objects after reconcile -destroy: %v", cs)
	}
	if cs, _ := reconToken.ObjectsOf(ctx, other); len(cs) != 0 {
		t.Errorf("a URI naming another token protected %v here", cs)
	}
}
