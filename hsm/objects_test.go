package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
	"github.com/miekg/pkcs11"
)

func TestFindAndDestroyKey(t *testing.T) {
	ctx := context.Background()
	specs := []KeySpec{
		{Type: KeyRSA, Bits: 2048},
		{Type: KeyECDSA, Curve: elliptic.P384()},
	}
	for _, spec := range specs {
		t.Run(spec.String(), func(t *testing.T) {
			ref := newRef(t, "find")
			before, err := testTok.CountObjects(ctx)
			if err != nil {
				t.Fatal(err)
			}
			gen, err := testTok.GenerateKeyPair(ctx, spec, ref)
			if err != nil {
				t.Fatal(err)
			}
			// A certificate with the same ID and label must go too.
			addCertificate(t, gen, ref)
			if n, _ := testTok.CountObjects(ctx); n != before+3 {
				t.Fatalf("objects = %d, want %d", n, before+3)
			}

			found, err := testTok.FindKey(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			if !publicEqual(found.Public(), gen.Public()) {
				t.Error("FindKey returned a different public key")
			}
			d := sha256.Sum256([]byte("found"))
			sig, err := found.Sign(rand.Reader, d[:], crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if !verify(gen.Public(), d[:], sig) {
				t.Error("signature by found key does not verify")
			}

			// Same label, other ID: not the same key.
			other := KeyRef{ID: append(bytes.Clone(ref.ID), 0), Label: ref.Label}
			if _, err := testTok.FindKey(ctx, other); !errors.Is(err, ErrNotFound) {
				t.Errorf("FindKey(other ID) = %v, want ErrNotFound", err)
			}
			if err := testTok.DestroyKey(ctx, other); !errors.Is(err, ErrNotFound) {
				t.Errorf("DestroyKey(other ID) = %v, want ErrNotFound", err)
			}

			if err := testTok.DestroyKey(ctx, ref); err != nil {
				t.Fatal(err)
			}
			if n, _ := testTok.CountObjects(ctx); n != before {
				t.Errorf("objects after DestroyKey = %d, want %d", n, before)
			}
			for name, err := range map[string]error{
				"FindKey":       func() error { _, err := testTok.FindKey(ctx, ref); return err }(),
				"DestroyKey":    testTok.DestroyKey(ctx, ref),
				"KeyAttributes": func() error { _, err := testTok.KeyAttributes(ctx, ref); return err }(),
			} {
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("%s after destroy = %v, want ErrNotFound", name, err)
				}
			}
		})
	}
}

func TestEmptyRefRejected(t *testing.T) {
	ctx := context.Background()
	before, _ := testTok.CountObjects(ctx)
	for _, ref := range []KeyRef{{}, {ID: []byte{1}}, {Label: "x"}} {
		if err := testTok.DestroyKey(ctx, ref); err == nil {
			t.Errorf("DestroyKey(%v) accepted an empty reference", ref)
		}
		if _, err := testTok.FindKey(ctx, ref); err == nil {
			t.Errorf("FindKey(%v) accepted an empty reference", ref)
		}
		if _, err := testTok.KeyAttributes(ctx, ref); err == nil {
			t.Errorf("KeyAttributes(%v) accepted an empty reference", ref)
		}
	}
	if n, _ := testTok.CountObjects(ctx); n != before {
		t.Errorf("objects %d -> %d", before, n)
	}
}

func TestListKeys(t *testing.T) {
	ctx := context.Background()
	p256 := KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}
	var made []KeyRef
	for _, label := range []string{"list-a-1", "list-a-2", "list-b-1"} {
		ref := newRef(t, "x")
		ref.Label = label
		k, err := testTok.GenerateKeyPair(ctx, p256, ref)
		if err != nil {
			t.Fatal(err)
		}
		destroyAtEnd(t, k)
		made = append(made, ref)
	}
	tests := []struct {
		prefix string
		want   []KeyRef
	}{
		{"list-a-", made[:2]},
		{"list-b-", made[2:]},
		{"list-", made},
		{"list-c-", nil},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			got, err := testTok.ListKeys(ctx, tt.prefix)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i].Label != tt.want[i].Label || !bytes.Equal(got[i].ID, tt.want[i].ID) {
					t.Errorf("[%d] = %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
	all, err := testTok.ListKeys(ctx, "")
	if err != nil || len(all) < 3 {
		t.Errorf("ListKeys(\"\") = %d keys, %v", len(all), err)
	}
}

// TestListObjectsLonePublicKey: ListObjects sees every class, including the
// lone public key a crash in the middle of a destroy would leave behind,
// which ListKeys cannot see.
func TestListObjectsLonePublicKey(t *testing.T) {
	ctx := context.Background()
	p256 := KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}
	whole := newRef(t, "lsobj-whole")
	k, err := testTok.GenerateKeyPair(ctx, p256, whole)
	if err != nil {
		t.Fatal(err)
	}
	destroyAtEnd(t, k)
	addCertificate(t, k, whole)
	half := newRef(t, "lsobj-half")
	if _, err := testTok.GenerateKeyPair(ctx, p256, half); err != nil {
		t.Fatal(err)
	}
	destroyRefAtEnd(t, half)
	// Destroy only the private half, as a process killed between the two
	// C_DestroyObject calls would.
	err = testTok.withRawSession(ctx, "test", func(sh pkcs11.SessionHandle) error {
		hs, err := testTok.findObjects(sh, append(refTemplate(half), pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)))
		if err != nil || len(hs) != 1 {
			return fmt.Errorf("private half: %d handles, %v", len(hs), err)
		}
		return testTok.p11.DestroyObject(sh, hs[0])
	})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		prefix string
		want   []ObjectClass // in the sorted order
	}{
		{"lsobj-whole", []ObjectClass{ClassCertificate, ClassPublicKey, ClassPrivateKey}},
		{"lsobj-half", []ObjectClass{ClassPublicKey}},
		{"lsobj-none", nil},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			got, err := testTok.ListObjects(ctx, tt.prefix)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want classes %v", got, tt.want)
			}
			for i, o := range got {
				if o.Class != tt.want[i] || !strings.HasPrefix(o.Ref.Label, tt.prefix) {
					t.Errorf("[%d] = %v %v, want %v", i, o.Class, o.Ref, tt.want[i])
				}
			}
		})
	}
	if keys, _ := testTok.ListKeys(ctx, "lsobj-half"); len(keys) != 0 {
		t.Errorf("ListKeys sees the lone public key: %v", keys)
	}
}

// addCertificate stores a self-signed certificate for key under ref, as a CA
// answer would be stored later.
func addCertificate(t *testing.T, key *Key, ref KeyRef) {
	t.Helper()
	cert := fixture.SelfSigned(t, key, &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: ref.Label},
		NotBefore:    time.Now(),
		NotAfter:     time.Now().Add(time.Hour),
	})
	err := testTok.withRawSession(context.Background(), "test", func(sh pkcs11.SessionHandle) error {
		_, err := testTok.p11.CreateObject(sh, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE),
			pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_TYPE, pkcs11.CKC_X_509),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_ID, ref.ID),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, ref.Label),
			pkcs11.NewAttribute(pkcs11.CKA_SUBJECT, cert.Subject.ToRDNSequence().String()),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE, cert.Raw),
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func publicEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

func verify(pub crypto.PublicKey, digest, sig []byte) bool {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(p, crypto.SHA256, digest, sig) == nil
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(p, digest, sig)
	}
	return false
}

// TestOwnedBy: DestroyKey destroys an object its search returned only when
// the object read back carries exactly the reference's CKA_ID and label.
func TestOwnedBy(t *testing.T) {
	ref := KeyRef{ID: []byte{1, 2, 3, 4}, Label: "csrd-7"}
	attrs := func(id []byte, label string) []*pkcs11.Attribute {
		return []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, id), pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}
	}
	tests := []struct {
		name  string
		attrs []*pkcs11.Attribute
		want  bool
	}{
		{"same id and label", attrs([]byte{1, 2, 3, 4}, "csrd-7"), true},
		{"another record's label", attrs([]byte{1, 2, 3, 4}, "csrd-70"), false},
		{"another id", attrs([]byte{1, 2, 3, 5}, "csrd-7"), false},
		{"id a prefix", attrs([]byte{1, 2, 3}, "csrd-7"), false},
		{"empty read-back", attrs(nil, ""), false},
		{"nothing read", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ownedBy(tt.attrs, ref); got != tt.want {
				t.Errorf("ownedBy = %v, want %v", got, tt.want)
			}
		})
	}
}
