package lifecycle

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
)

// FuzzImportCertificates drives the certificate import parser (what
// POST Certificates/Import runs before it looks at any record) with
// arbitrary Certificate and Chain fields. Nothing may panic; every refusal
// must be a lifecycle *Error of class ErrInvalidCertificate (the API maps
// it to a 400; anything else would be a 500) with a bounded message that
// never echoes a private key back; every accepted leaf must yield the SPKI
// hash records are looked up by and a well-formed thumbprint and serial.
func FuzzImportCertificates(f *testing.F) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	caKey, leafKey := fuzzKey(f), fuzzKey(f)
	caTmpl := fuzzValid("fuzz CA", now)
	caTmpl.IsCA, caTmpl.BasicConstraintsValid = true, true
	issuer := &fixture.CA{Cert: fixture.SelfSigned(f, caKey, caTmpl), Key: caKey}
	ca := issuer.Cert
	leaf := issuer.Issue(f, fuzzValid("leaf.example.com", now), leafKey.Public())
	expired := issuer.Issue(f, fuzzValid("old.example.com", now.AddDate(-2, 0, 0)), leafKey.Public())
	keyDER, _ := x509.MarshalPKCS8PrivateKey(leafKey)
	for _, s := range [][2]string{
		{fixture.PEM(leaf), ""},
		{fixture.PEM(leaf) + fixture.PEM(ca), ""},
		{fixture.PEM(leaf), fixture.PEM(ca)},
		{base64.StdEncoding.EncodeToString(leaf.Raw), base64.StdEncoding.EncodeToString(ca.Raw)},
		{fixture.PEM(expired), ""},
		{fixture.PEM(ca), fixture.PEM(leaf)},
		{string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})), ""},
		{fixture.PEM(leaf) + string(pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: []byte{0x30, 0}})), ""},
		{"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", ""},
		{"MIIB" + strings.Repeat("A", 40), ""},
		{"-----BEGIN", "garbage"},
		{"", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, certificate, chain string) {
		certs, err := parseCertificates("Certificate", certificate)
		if err != nil {
			checkRefusal(t, err, certificate)
			return
		}
		more, err := parseCertificates("Chain", chain)
		if err != nil {
			checkRefusal(t, err, chain)
			return
		}
		if len(certs) == 0 {
			return // Import answers "Certificate is empty"
		}
		for _, c := range append(certs, more...) {
			if c == nil {
				t.Fatal("nil certificate accepted")
			}
		}
		leaf, rest := certs[0], append(certs[1:], more...)
		if err := checkCertificate(leaf, rest, now); err != nil {
			checkRefusal(t, err, certificate+chain)
		}
		if h := spkiHash(leaf); len(h) != 32 {
			t.Fatalf("SPKI hash of %d bytes", len(h))
		}
		info := certInfo(leaf, rest)
		if _, err := hex.DecodeString(info.Thumbprint); err != nil || len(info.Thumbprint) != 40 || strings.ToUpper(info.Thumbprint) != info.Thumbprint {
			t.Fatalf("thumbprint %q", info.Thumbprint)
		}
		if _, err := hex.DecodeString(info.Serial); err != nil && info.Serial != "" {
			t.Fatalf("serial %q is not hex", info.Serial)
		}
	})
}

// checkRefusal: a refused import is a client error with a message fit to
// show, bounded whatever the input's size, and never containing the body
// of a private key the client sent by mistake.
func checkRefusal(t *testing.T, err error, input string) {
	t.Helper()
	var le *Error
	if !errors.As(err, &le) || !errors.Is(err, ErrInvalidCertificate) {
		t.Fatalf("refusal is not an ErrInvalidCertificate *Error: %#v", err)
	}
	if len(le.Msg) > 1000 {
		t.Fatalf("refusal message of %d bytes", len(le.Msg))
	}
	for rest := []byte(input); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if body := base64.StdEncoding.EncodeToString(b.Bytes); len(body) >= 16 && strings.Contains(le.Msg, body[:16]) {
			t.Fatalf("refusal echoes a PEM body: %s", le.Msg)
		}
	}
}

func fuzzKey(f *testing.F) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	return k
}

// fuzzValid is a year's validity from notBefore.
func fuzzValid(cn string, notBefore time.Time) *x509.Certificate {
	return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, NotBefore: notBefore, NotAfter: notBefore.AddDate(1, 0, 0)}
}
