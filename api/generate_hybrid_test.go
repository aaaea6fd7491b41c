package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/cloudflare/circl/sign/ed448"

	"github.com/csrd/csrd/csr/csrtest"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/store"
)

// generateOK posts body and returns the CSR's DER and its record.
func generateOK(t *testing.T, body string) ([]byte, *store.KeyRecord) {
	t.Helper()
	resp := send(t, http.MethodPost, generatePath, "application/json", body, nil)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, raw)
	}
	var out struct{ CSR string }
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(out.CSR))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("not a CSR: %s", raw)
	}
	loc := resp.Header.Get("Location")
	id, err := strconv.ParseInt(loc[strings.LastIndex(loc, "/")+1:], 10, 64)
	if err != nil {
		t.Fatalf("Location %q", loc)
	}
	rec, err := testStore.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if rec.CSRPEM != out.CSR || rec.State != store.StatePending {
		t.Fatalf("record %d: state %s", id, rec.State)
	}
	return block.Bytes, rec
}

// TestGenerateEd448 covers what crypto/x509 cannot parse: the CSR verifies
// with circl and openssl, the key is the token's, sensitive, never
// extractable.
func TestGenerateEd448(t *testing.T) {
	ctx := context.Background()
	for name, body := range map[string]string{
		"without KeyLength": `{"Subject":"CN=ed448.example.com","KeyType":"ED448"}`,
		"KeyLength 448":     `{"Subject":"CN=ed448b.example.com","KeyType":"ed448","KeyLength":448,"SANs":{"dns":["ed448b.example.com"]}}`,
	} {
		t.Run(name, func(t *testing.T) {
			der, rec := generateOK(t, body)
			if err := csrtest.VerifyPrimary(der); err != nil {
				t.Errorf("Ed448 signature (circl): %v", err)
			}
			out, err := csrtest.OpenSSLVerify(t.TempDir(), der)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "ED448") {
				t.Errorf("openssl does not see an Ed448 key:\n%s", out)
			}
			if rec.KeyType != "ED448" || rec.KeySize != 448 {
				t.Errorf("record key %s %d", rec.KeyType, rec.KeySize)
			}
			ref := hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}
			key, err := testToken.FindKey(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			r, _ := csrtest.Parse(der)
			var spki struct {
				Alg asn1.RawValue
				Key asn1.BitString
			}
			if _, err := asn1.Unmarshal(r.SPKI.FullBytes, &spki); err != nil {
				t.Fatal(err)
			}
			if pub, ok := key.Public().(ed448.PublicKey); !ok || !bytes.Equal(pub, spki.Key.Bytes) {
				t.Errorf("CSR key differs from the token's (%T)", key.Public())
			}
			attrs, err := testToken.KeyAttributes(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			if !attrs.Sensitive || attrs.Extractable || !attrs.NeverExtractable || !attrs.AlwaysSensitive || !attrs.Sign || attrs.Decrypt || attrs.Derive {
				t.Errorf("private key attributes %+v", attrs)
			}
		})
	}
}

// TestGenerateHybridAPI: hybrid CSRs through the HTTP API, every ML-DSA
// level, with RSA, ECC and Ed25519 primaries.
func TestGenerateHybridAPI(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name, body string
		level      string
		oid        string
	}{
		{"RSA-2048 + ML-DSA-44", `{"Subject":"CN=h1.example.com","KeyType":"RSA","KeyLength":2048,"AlternativeKeyType":"ML-DSA-44"}`, "ML-DSA-44", csrtest.OIDMLDSA44.String()},
		{"ECC P-256 + ML-DSA-65 with length", `{"Subject":"CN=h2.example.com","KeyType":"ECC","KeyLength":256,"AlternativeKeyType":"ml-dsa-65","AlternativeKeyLength":65,"SANs":{"dns":["h2.example.com"]}}`, "ML-DSA-65", csrtest.OIDMLDSA65.String()},
		{"Ed25519 + ML-DSA-87, SDK empty strings", `{"Subject":"CN=h3.example.com","KeyType":"ED25519","AlternativeKeyType":"ML-DSA-87","AlternativeCurve":""}`, "ML-DSA-87", csrtest.OIDMLDSA87.String()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			der, rec := generateOK(t, tc.body)
			if err := csrtest.VerifyPrimary(der); err != nil {
				t.Errorf("primary signature (Go): %v", err)
			}
			if _, err := csrtest.OpenSSLVerify(t.TempDir(), der); err != nil {
				t.Error(err)
			}
			alt, err := csrtest.VerifyAlt(der)
			if err != nil {
				t.Fatalf("alternative signature (circl): %v", err)
			}
			if alt.Algorithm.String() != tc.oid {
				t.Errorf("alternative algorithm %s, want %s", alt.Algorithm, tc.oid)
			}
			r, _ := csrtest.Parse(der)
			if !r.AttributesSorted() {
				t.Error("attribute SET not in DER order")
			}
			spki, _ := r.Attribute(csrtest.OIDSubjectAltPublicKeyInfo)
			if sum := sha256.Sum256(spki.FullBytes); rec.AltKeyType != tc.level || rec.AltKeyStorage != store.AltStorageSealed ||
				!bytes.Equal(rec.AltSPKISHA256, sum[:]) || len(rec.AltSealedSeed) == 0 {
				t.Errorf("record: alt %q %q spki %x seal %d bytes", rec.AltKeyType, rec.AltKeyStorage, rec.AltSPKISHA256, len(rec.AltSealedSeed))
			}
			var dec struct {
				AltKey         *struct{ Algorithm string } `json:"alt_key"`
				AllowSealedAlt bool                        `json:"allow_sealed_alt"`
			}
			if err := json.Unmarshal(rec.Decision, &dec); err != nil || dec.AltKey == nil || dec.AltKey.Algorithm != tc.level || !dec.AllowSealedAlt {
				t.Errorf("decision %s", rec.Decision)
			}
			if _, err := testToken.FindKey(ctx, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}); err != nil {
				t.Errorf("primary key not in the token: %v", err)
			}
		})
	}
}
