package csr

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"

	"github.com/csrd/csrd/csr/csrtest"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// mldsaKeys returns one software ML-DSA key per parameter set.
func mldsaKeys(t *testing.T) map[string]crypto.Signer {
	t.Helper()
	_, k44, err := mldsa44.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, k65, _ := mldsa65.GenerateKey(rand.Reader)
	_, k87, _ := mldsa87.GenerateKey(rand.Reader)
	return map[string]crypto.Signer{"ML-DSA-44": k44, "ML-DSA-65": k65, "ML-DSA-87": k87}
}

func TestBuildHybrid(t *testing.T) {
	dn, err := ParseDN("CN=pq.example.com,O=csrd,C=US")
	if err != nil {
		t.Fatal(err)
	}
	sans := &SANs{DNS: []string{"pq.example.com"}}
	alts := mldsaKeys(t)
	wantOID := map[string]asn1.ObjectIdentifier{
		"ML-DSA-44": csrtest.OIDMLDSA44, "ML-DSA-65": csrtest.OIDMLDSA65, "ML-DSA-87": csrtest.OIDMLDSA87,
	}
	for _, level := range []string{"ML-DSA-44", "ML-DSA-65", "ML-DSA-87"} {
		for _, primary := range []string{"RSA-2048", "P-256", "P-384", "Ed25519", "Ed448"} {
			t.Run(primary+"+"+level, func(t *testing.T) {
				der, err := BuildHybrid(rand.Reader, &Request{Subject: dn, SANs: sans}, testKeys()[primary], alts[level])
				if err != nil {
					t.Fatal(err)
				}
				if err := csrtest.VerifyPrimary(der); err != nil {
					t.Errorf("primary signature: %v", err)
				}
				if _, err := csrtest.OpenSSLVerify(t.TempDir(), der); err != nil {
					t.Error(err)
				}
				alt, err := csrtest.VerifyAlt(der)
				if err != nil {
					t.Fatal(err)
				}
				if !alt.Algorithm.Equal(wantOID[level]) {
					t.Errorf("alt algorithm %s, want %s", alt.Algorithm, wantOID[level])
				}
				wantPub, _ := alts[level].Public().(interface{ MarshalBinary() ([]byte, error) }).MarshalBinary()
				if !bytes.Equal(alt.PublicKey, wantPub) {
					t.Error("subjectAltPublicKeyInfo does not hold the raw alternative public key")
				}
				r, err := csrtest.Parse(der)
				if err != nil {
					t.Fatal(err)
				}
				if !r.AttributesSorted() {
					t.Error("attribute SET is not in DER order")
				}
				if len(r.Attributes) != 4 {
					t.Errorf("%d attributes, want extensionRequest + 72/73/74", len(r.Attributes))
				}
				if _, err := r.Attribute(csrtest.OIDExtensionRequest); err != nil {
					t.Error(err)
				}
			})
		}
	}
}

// TestBuildHybridTamper: a verifier must notice a changed alternative
// signature, and the primary signature covers 2.5.29.74.
func TestBuildHybridTamper(t *testing.T) {
	dn, _ := ParseDN("CN=x")
	der, err := BuildHybrid(rand.Reader, &Request{Subject: dn}, testKeys()["P-256"], mldsaKeys(t)["ML-DSA-44"])
	if err != nil {
		t.Fatal(err)
	}
	r, _ := csrtest.Parse(der)
	v, _ := r.Attribute(csrtest.OIDAltSignatureValue)
	i := bytes.Index(der, v.FullBytes)
	if i < 0 {
		t.Fatal("signature value not found")
	}
	bad := bytes.Clone(der)
	bad[i+100] ^= 1
	if _, err := csrtest.VerifyAlt(bad); err == nil {
		t.Error("VerifyAlt accepted a flipped alternative signature")
	}
	if err := csrtest.VerifyPrimary(bad); err == nil {
		t.Error("primary signature does not cover altSignatureValue")
	}
}

func TestBuildHybridErrors(t *testing.T) {
	dn, _ := ParseDN("CN=x")
	p256 := testKeys()["P-256"]
	alt := mldsaKeys(t)["ML-DSA-65"]
	tests := []struct {
		name         string
		req          *Request
		primary, alt crypto.Signer
		want         error
	}{
		{"nil alt", &Request{Subject: dn}, p256, nil, ErrInvalidRequest},
		{"nil primary", &Request{Subject: dn}, nil, alt, ErrInvalidRequest},
		{"nil request", nil, p256, alt, ErrInvalidRequest},
		{"72 given twice", &Request{Subject: dn, ExtraAttributes: []Attribute{{Type: oidSubjectAltPublicKeyInfo, Values: []asn1.RawValue{{Tag: 5}}}}}, p256, alt, ErrInvalidRequest},
		{"74 given", &Request{Subject: dn, ExtraAttributes: []Attribute{{Type: oidAltSignatureValue, Values: []asn1.RawValue{{Tag: 5}}}}}, p256, alt, ErrInvalidRequest},
		{"alt signs with another key", &Request{Subject: dn}, p256, badSigner{Signer: alt, pub: mldsaKeys(t)["ML-DSA-65"].Public()}, ErrBadSignature},
		{"alt signature garbled", &Request{Subject: dn}, p256, badSigner{Signer: alt, mangle: func(s []byte) []byte { s[0] ^= 1; return s }}, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := BuildHybrid(rand.Reader, tt.req, tt.primary, tt.alt); !errors.Is(err, tt.want) {
				t.Errorf("BuildHybrid = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestMLDSASPKI(t *testing.T) {
	for name, k := range mldsaKeys(t) {
		t.Run(name, func(t *testing.T) {
			spki, err := SPKI(k.Public())
			if err != nil {
				t.Fatal(err)
			}
			var s struct {
				Alg struct{ OID asn1.ObjectIdentifier }
				Key asn1.BitString
			}
			if rest, err := asn1.Unmarshal(spki, &s); err != nil || len(rest) != 0 {
				t.Fatal(err)
			}
			// Re-encoding with an AlgorithmIdentifier of just the OID gives the
			// same bytes only if the parameters were absent.
			again, _ := asn1.Marshal(struct {
				Alg struct{ OID asn1.ObjectIdentifier }
				Key asn1.BitString
			}{s.Alg, s.Key})
			if !bytes.Equal(again, spki) {
				t.Error("AlgorithmIdentifier carries parameters")
			}
			raw, _ := k.Public().(interface{ MarshalBinary() ([]byte, error) }).MarshalBinary()
			if !bytes.Equal(s.Key.Bytes, raw) || s.Key.BitLength != 8*len(raw) {
				t.Error("BIT STRING is not the raw FIPS 204 public key")
			}
		})
	}
}

// TestHybridGolden pins the exact bytes and structure of one hybrid CSR.
// Both keys are deterministic software keys from fixed seeds (Ed25519 and
// circl's deterministic ML-DSA signing), so every byte is reproducible; the
// token's keys are not, which is why the golden uses none. Regenerate with
// go test ./csr -run TestHybridGolden -update, and review the diff.
func TestHybridGolden(t *testing.T) {
	edSeed := bytes.Repeat([]byte{0x11}, ed25519.SeedSize)
	primary := ed25519.NewKeyFromSeed(edSeed)
	var xi [mldsa65.SeedSize]byte
	for i := range xi {
		xi[i] = byte(i)
	}
	_, alt := mldsa65.NewKeyFromSeed(&xi)
	dn, err := ParseDN(`CN=hybrid.example.com,O="csrd, golden",C=US`)
	if err != nil {
		t.Fatal(err)
	}
	sans := &SANs{DNS: []string{"hybrid.example.com"}}
	der, err := BuildHybrid(rand.Reader, &Request{Subject: dn, SANs: sans}, primary, alt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := csrtest.VerifyAlt(der); err != nil {
		t.Fatal(err)
	}
	if err := csrtest.VerifyPrimary(der); err != nil {
		t.Fatal(err)
	}
	gotPEM := PEM(der)
	gotTree := dumpDER(der)
	pemFile := filepath.Join("testdata", "hybrid-ed25519-mldsa65.pem")
	treeFile := filepath.Join("testdata", "hybrid-ed25519-mldsa65.txt")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		for f, b := range map[string]string{pemFile: gotPEM, treeFile: gotTree} {
			if err := os.WriteFile(f, []byte(b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	wantTree, err := os.ReadFile(treeFile)
	if err != nil {
		t.Fatal(err)
	}
	if gotTree != string(wantTree) {
		t.Errorf("structure differs from %s:\n%s", treeFile, gotTree)
	}
	wantPEM, err := os.ReadFile(pemFile)
	if err != nil {
		t.Fatal(err)
	}
	if gotPEM != string(wantPEM) {
		t.Errorf("bytes differ from %s", pemFile)
	}
	// The golden file itself still verifies (it is what a CA would get).
	block, _ := pem.Decode(wantPEM)
	if block == nil {
		t.Fatal("golden PEM does not decode")
	}
	if _, err := csrtest.OpenSSLVerify(t.TempDir(), block.Bytes); err != nil {
		t.Error(err)
	}
}

// dumpDER renders DER as an indented tree: tags, lengths, OIDs, small
// integers and strings; long byte strings by length only.
func dumpDER(der []byte) string {
	var b strings.Builder
	var walk func(data []byte, depth int)
	walk = func(data []byte, depth int) {
		for len(data) > 0 {
			var v asn1.RawValue
			rest, err := asn1.Unmarshal(data, &v)
			if err != nil {
				fmt.Fprintf(&b, "%s!! %v\n", strings.Repeat("  ", depth), err)
				return
			}
			data = rest
			fmt.Fprintf(&b, "%s%s len=%d", strings.Repeat("  ", depth), derTagName(v), len(v.Bytes))
			switch {
			case v.Class == asn1.ClassUniversal && v.Tag == asn1.TagOID:
				var oid asn1.ObjectIdentifier
				if _, err := asn1.Unmarshal(v.FullBytes, &oid); err != nil {
					fmt.Fprintf(&b, " !! %v", err)
				} else {
					fmt.Fprintf(&b, " %s", oid)
				}
			case v.Class == asn1.ClassUniversal && v.Tag == asn1.TagInteger && len(v.Bytes) <= 8:
				fmt.Fprintf(&b, " %x", v.Bytes)
			case v.Class == asn1.ClassUniversal && (v.Tag == asn1.TagUTF8String || v.Tag == asn1.TagPrintableString):
				fmt.Fprintf(&b, " %q", v.Bytes)
			case v.Class == asn1.ClassContextSpecific && !v.IsCompound:
				fmt.Fprintf(&b, " %q", v.Bytes)
			case v.Class == asn1.ClassUniversal && v.Tag == asn1.TagOctetString && len(v.Bytes) > 1 && v.Bytes[0] == 0x30:
				b.WriteString(" (DER)\n")
				walk(v.Bytes, depth+1)
				continue
			}
			b.WriteByte('\n')
			if v.IsCompound {
				walk(v.Bytes, depth+1)
			}
		}
	}
	walk(der, 0)
	return b.String()
}

func derTagName(v asn1.RawValue) string {
	if v.Class == asn1.ClassContextSpecific {
		return fmt.Sprintf("[%d]", v.Tag)
	}
	names := map[int]string{
		asn1.TagBoolean: "BOOLEAN", asn1.TagInteger: "INTEGER", asn1.TagBitString: "BIT STRING",
		asn1.TagOctetString: "OCTET STRING", asn1.TagNull: "NULL", asn1.TagOID: "OID",
		asn1.TagUTF8String: "UTF8String", asn1.TagSequence: "SEQUENCE", asn1.TagSet: "SET",
		asn1.TagPrintableString: "PrintableString", asn1.TagIA5String: "IA5String",
	}
	if n, ok := names[v.Tag]; ok {
		return n
	}
	return fmt.Sprintf("tag%d", v.Tag)
}
