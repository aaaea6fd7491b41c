package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/miekg/pkcs11"
	"github.com/rs/zerolog"
)

// TestAuditKey runs on the second test token, opened for the test: the
// audit key is made in the token on first use with the protective
// attributes, found again (not made again) by a later process, signs
// SHA-256 digests, and a look-alike that was not generated as one is
// never used even when it would sort first.
func TestAuditKey(t *testing.T) {
	ctx := context.Background()
	tok, err := Open(ctx, testConfig(otherLabel, testHSM.PIN), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { tok.Close() }()

	// An extractable P-256 pair labelled like the audit key, CKA_ID 00.
	fake := KeyRef{ID: []byte{0}, Label: AuditKeyLabel}
	pub, priv, err := specAttributes(KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}, fake, TemplateFull)
	if err != nil {
		t.Fatal(err)
	}
	priv[pkcs11.CKA_SENSITIVE] = pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false)
	priv[pkcs11.CKA_EXTRACTABLE] = pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)
	err = tok.withRawSession(ctx, "test", func(sh pkcs11.SessionHandle) error {
		_, _, err := tok.p11.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)},
			attrList(pub), attrList(priv))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tok.DestroyKey(ctx, fake) }() // tok: the one open at the end

	key, err := tok.AuditKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ref := key.Ref()
	if ref.Label != AuditKeyLabel || bytes.Equal(ref.ID, fake.ID) {
		t.Fatalf("audit key %s: the extractable look-alike was used", ref)
	}
	ecPub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok || ecPub.Curve != elliptic.P256() {
		t.Fatalf("audit public key %T, want P-256", key.Public())
	}
	d := sha256.Sum256([]byte("checkpoint"))
	sig, err := key.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(ecPub, d[:], sig) {
		t.Error("the audit key's signature does not verify")
	}
	if _, err := key.Sign(rand.Reader, d[:], crypto.SHA384); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Sign with SHA-384 = %v, want ErrUnsupported", err)
	}
	checkAuditKeyAttributes(t, tok, ref)

	// A later process finds the same key instead of making another.
	tok.Close()
	if tok, err = Open(ctx, testConfig(otherLabel, testHSM.PIN), zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	again, err := tok.AuditKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all, err := tok.AuditKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Ref().ID, ref.ID) || len(all) != 1 || !bytes.Equal(all[0].Ref().ID, ref.ID) {
		t.Fatalf("after reopening: key %s, all %d; want the one key %s", again.Ref(), len(all), ref)
	}

	// A key destroyed behind csrd's back: Sign says so, and the next use
	// makes a new one (which the operator must pin).
	if err := tok.DestroyKey(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := again.Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Sign with a destroyed key = %v, want ErrNotFound", err)
	}
	fresh, err := tok.AuditKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(fresh.Ref().ID, ref.ID) {
		t.Error("AuditKey returned the destroyed key")
	}
	_ = tok.DestroyKey(ctx, fresh.Ref())
}

// checkAuditKeyAttributes reads the private key's attributes back and shows
// that a PIN holder cannot turn decryption or derivation on.
func checkAuditKeyAttributes(t *testing.T, tok *Token, ref KeyRef) {
	t.Helper()
	ctx := context.Background()
	err := tok.withRawSession(ctx, "test", func(sh pkcs11.SessionHandle) error {
		hs, err := tok.findObjects(sh, append(refTemplate(ref), pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)))
		if err != nil || len(hs) != 1 {
			t.Fatalf("find private key: %d, %v", len(hs), err)
		}
		want := map[uint]bool{
			pkcs11.CKA_SENSITIVE: true, pkcs11.CKA_ALWAYS_SENSITIVE: true, pkcs11.CKA_EXTRACTABLE: false,
			pkcs11.CKA_NEVER_EXTRACTABLE: true, pkcs11.CKA_LOCAL: true, pkcs11.CKA_SIGN: true,
			pkcs11.CKA_DECRYPT: false, pkcs11.CKA_DERIVE: false, pkcs11.CKA_UNWRAP: false,
			pkcs11.CKA_MODIFIABLE: false, pkcs11.CKA_COPYABLE: false, pkcs11.CKA_PRIVATE: true, pkcs11.CKA_TOKEN: true,
		}
		for typ, v := range want {
			got, err := tok.p11.GetAttributeValue(sh, hs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(typ, nil)})
			if err != nil {
				t.Errorf("read attribute %#x: %v", typ, err)
				continue
			}
			if b := got[0].Value; len(b) != 1 || (b[0] != 0) != v {
				t.Errorf("attribute %#x = %v, want %v", typ, b, v)
			}
		}
		for _, a := range []uint{pkcs11.CKA_DECRYPT, pkcs11.CKA_DERIVE} {
			if err := tok.p11.SetAttributeValue(sh, hs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(a, true)}); err == nil {
				t.Errorf("setting attribute %#x on the audit key succeeded", a)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
