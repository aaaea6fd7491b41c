package hsm

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"fmt"
	"testing"

	"github.com/miekg/pkcs11"
)

// TestSignOnlyLocked: on a real token, every object csrd generates keeps the
// attributes it was made with. The token reports the private key (and the
// KEK) neither modifiable nor copyable and the public key unmodifiable; a
// logged-in session cannot turn CKA_DECRYPT, CKA_DERIVE or CKA_UNWRAP on
// for a private key, nor CKA_ENCRYPT or CKA_WRAP on for a public key or the
// KEK, nor make a copy with them on; and the key still signs and is
// destroyed as before.
func TestSignOnlyLocked(t *testing.T) {
	ctx := context.Background()
	specs := []KeySpec{
		{Type: KeyRSA, Bits: 2048},
		{Type: KeyECDSA, Curve: elliptic.P256()},
		{Type: KeyEd25519},
		{Type: KeyEd448},
	}
	for _, spec := range specs {
		t.Run(spec.String(), func(t *testing.T) {
			if err := testTok.CanGenerate(spec); err != nil {
				t.Fatalf("CanGenerate: %v", err)
			}
			ref := newRef(t, "locked")
			key, err := testTok.GenerateKeyPair(ctx, spec, ref)
			if err != nil {
				t.Fatal(err)
			}
			destroyAtEnd(t, key)
			priv, pub := pairHandles(t, ref)
			checkLocked(t, "private key", priv, map[uint]bool{ckaCopyable: false},
				pkcs11.CKA_DECRYPT, pkcs11.CKA_DERIVE, pkcs11.CKA_UNWRAP, pkcs11.CKA_SIGN_RECOVER)
			checkLocked(t, "public key", pub, nil, pkcs11.CKA_ENCRYPT, pkcs11.CKA_WRAP, pkcs11.CKA_VERIFY_RECOVER)
			attrs, err := testTok.KeyAttributes(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			if attrs.Decrypt || attrs.Derive || attrs.Unwrap || !attrs.Sign || attrs.Modifiable || attrs.Copyable {
				t.Errorf("KeyAttributes after the attempts: %+v", attrs)
			}
			// Still a working signing key, and still destroyable.
			if _, err := key.Sign(nil, digest(0, []byte("x")), signOpts(spec)); err != nil {
				t.Errorf("sign: %v", err)
			}
		})
	}
	t.Run("KEK", func(t *testing.T) {
		var kek pkcs11.ObjectHandle
		err := testTok.withRawSession(ctx, "test", func(sh pkcs11.SessionHandle) error {
			var err error
			_, kek, err = testTok.sealingKEK(sh)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		checkLocked(t, "KEK", kek, map[uint]bool{ckaCopyable: false},
			pkcs11.CKA_WRAP, pkcs11.CKA_UNWRAP, pkcs11.CKA_DERIVE, pkcs11.CKA_SIGN)
	})
}

// pairHandles finds the private and public key objects of ref.
func pairHandles(t *testing.T, ref KeyRef) (priv, pub pkcs11.ObjectHandle) {
	t.Helper()
	err := testTok.withRawSession(context.Background(), "test", func(sh pkcs11.SessionHandle) error {
		for class, dst := range map[uint]*pkcs11.ObjectHandle{pkcs11.CKO_PRIVATE_KEY: &priv, pkcs11.CKO_PUBLIC_KEY: &pub} {
			hs, err := testTok.findObjects(sh, append(refTemplate(ref), pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)))
			if err != nil {
				return err
			}
			if len(hs) != 1 {
				return fmt.Errorf("%d objects of class %d", len(hs), class)
			}
			*dst = hs[0]
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// checkLocked asserts that object h reports CKA_MODIFIABLE false (and the
// extra attributes given), that C_SetAttributeValue turning any of grant on
// fails and leaves it off, and that C_CopyObject with them on makes nothing.
func checkLocked(t *testing.T, what string, h pkcs11.ObjectHandle, extra map[uint]bool, grant ...uint) {
	t.Helper()
	want := map[uint]bool{pkcs11.CKA_MODIFIABLE: false}
	for a, v := range extra {
		want[a] = v
	}
	for _, a := range grant {
		want[a] = false
	}
	err := testTok.withRawSession(context.Background(), "test", func(sh pkcs11.SessionHandle) error {
		read := func() map[uint]bool {
			got := map[uint]bool{}
			for a := range want {
				v, err := testTok.p11.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(a, nil)})
				if err != nil {
					t.Errorf("%s: reading %s: %v", what, attrName(a), err)
					continue
				}
				got[a] = len(v[0].Value) > 0 && v[0].Value[0] != 0
			}
			return got
		}
		for a, v := range read() {
			if v != want[a] {
				t.Errorf("%s: %s is %v, want %v", what, attrName(a), v, want[a])
			}
		}
		for _, a := range grant {
			on := []*pkcs11.Attribute{pkcs11.NewAttribute(a, true)}
			if err := testTok.p11.SetAttributeValue(sh, h, on); err == nil {
				t.Errorf("%s: C_SetAttributeValue(%s = true) succeeded", what, attrName(a))
			}
			if cp, err := testTok.p11.CopyObject(sh, h, on); err == nil {
				_ = testTok.p11.DestroyObject(sh, cp)
				t.Errorf("%s: C_CopyObject with %s = true succeeded", what, attrName(a))
			}
		}
		for _, a := range grant {
			if got := read()[a]; got {
				t.Errorf("%s: %s is on after the attempts", what, attrName(a))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// signOpts is what csr passes when signing with a key of spec.
func signOpts(spec KeySpec) crypto.SignerOpts {
	if spec.Type == KeyEd25519 || spec.Type == KeyEd448 {
		return crypto.Hash(0)
	}
	return crypto.SHA256
}
