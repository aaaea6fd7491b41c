package hsm

import (
	"bytes"
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"reflect"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
)

func selfSigned(t *testing.T, key *Key, cn string, serial int64) *x509.Certificate {
	t.Helper()
	return fixture.SelfSigned(t, key, &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
	})
}

func TestPutCertificate(t *testing.T) {
	ctx := context.Background()
	ref := newRef(t, "cert")
	key, err := testTok.GenerateKeyPair(ctx, KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}, ref)
	if err != nil {
		t.Fatal(err)
	}
	destroyRefAtEnd(t, ref)
	cert := selfSigned(t, key, "leaf", 0x1234)
	before, _ := testTok.CountObjects(ctx)

	created, err := testTok.PutCertificate(ctx, ref, cert)
	if err != nil || !created {
		t.Fatalf("PutCertificate = %v, %v; want created", created, err)
	}
	// The same certificate again is a no-op; another one is refused.
	if created, err := testTok.PutCertificate(ctx, ref, cert); err != nil || created {
		t.Errorf("PutCertificate again = %v, %v; want no-op", created, err)
	}
	other := selfSigned(t, key, "other", 0x5678)
	if _, err := testTok.PutCertificate(ctx, ref, other); !errors.Is(err, ErrCertificateMismatch) {
		t.Errorf("PutCertificate(other) = %v, want ErrCertificateMismatch", err)
	}
	if n, _ := testTok.CountObjects(ctx); n != before+1 {
		t.Errorf("objects %d -> %d, want one certificate added", before, n)
	}

	certs, err := testTok.Certificates(ctx, ref)
	if err != nil || len(certs) != 1 {
		t.Fatalf("Certificates = %v, %v", certs, err)
	}
	wantSerial, _ := asn1.Marshal(big.NewInt(0x1234))
	c := certs[0]
	for name, pair := range map[string][2][]byte{
		"CKA_VALUE":         {c.Value, cert.Raw},
		"CKA_SUBJECT":       {c.Subject, cert.RawSubject},
		"CKA_ISSUER":        {c.Issuer, cert.RawIssuer},
		"CKA_SERIAL_NUMBER": {c.Serial, wantSerial},
		"CKA_ID":            {c.Ref.ID, ref.ID},
	} {
		if !bytes.Equal(pair[0], pair[1]) {
			t.Errorf("%s = %x, want %x", name, pair[0], pair[1])
		}
	}
	if c.Private {
		t.Error("certificate object is CKA_PRIVATE; certificates are public")
	}
	classes, err := testTok.ObjectsOf(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if want := []ObjectClass{ClassCertificate, ClassPublicKey, ClassPrivateKey}; !reflect.DeepEqual(classes, want) {
		t.Errorf("ObjectsOf = %v, want %v", classes, want)
	}
	// DestroyKey takes the certificate with the key pair.
	if err := testTok.DestroyKey(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if classes, err := testTok.ObjectsOf(ctx, ref); err != nil || len(classes) != 0 {
		t.Errorf("after DestroyKey: %v, %v", classes, err)
	}
	if _, err := testTok.PutCertificate(ctx, KeyRef{}, cert); err == nil {
		t.Error("PutCertificate with an empty reference succeeded")
	}
}

func TestListObjects(t *testing.T) {
	ctx := context.Background()
	p256 := KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}
	var refs []KeyRef
	for _, label := range []string{"inv-a-1", "inv-a-2", "inv-b-1"} {
		ref := newRef(t, "x")
		ref.Label = label
		if _, err := testTok.GenerateKeyPair(ctx, p256, ref); err != nil {
			t.Fatal(err)
		}
		destroyRefAtEnd(t, ref)
		refs = append(refs, ref)
	}
	got, err := testTok.ListObjects(ctx, "inv-a-")
	if err != nil {
		t.Fatal(err)
	}
	var want []Object
	for _, r := range refs[:2] {
		want = append(want, Object{ClassPublicKey, r}, Object{ClassPrivateKey, r})
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ListObjects(inv-a-) = %v, want %v", got, want)
	}
	if all, err := testTok.ListObjects(ctx, ""); err != nil || len(all) < 6 {
		t.Errorf("ListObjects(\"\") = %d objects, %v", len(all), err)
	}
}

func TestURI(t *testing.T) {
	tests := []struct {
		name string
		u    URI
		want string
	}{
		{"key", KeyURI("csrd", "a1b2", KeyRef{ID: []byte{0x01, 0xab, 0xff}, Label: "csrd-7"}),
			"pkcs11:token=csrd;serial=a1b2;id=%01%AB%FF;object=csrd-7;type=private"},
		{"no serial", KeyURI("csrd", "", KeyRef{ID: []byte("A"), Label: "csrd-1"}),
			"pkcs11:token=csrd;id=%41;object=csrd-1;type=private"},
		// Separators, '%', spaces and non-ASCII in labels are encoded.
		{"reserved characters", URI{Token: "My Token;x/y%", Object: "k=1?ä", Type: "cert"},
			"pkcs11:token=My%20Token%3Bx%2Fy%25;object=k%3D1%3F%C3%A4;type=cert"},
		{"unreserved kept", URI{Token: "a-b.c_d~e"}, "pkcs11:token=a-b.c_d~e"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.u.String(); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}
