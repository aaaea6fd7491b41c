package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestDecideDefault(t *testing.T) {
	cases := []struct {
		name    string
		key     KeyRequest
		want    KeySpec
		rules   []string // rule of each violation, in order
		message string   // substring of the client message
	}{
		{name: "RSA 2048", key: KeyRequest{KeyType: "RSA", KeyLength: 2048}, want: KeySpec{RSA, 2048, ""}},
		{name: "RSA 8192 lower-case type", key: KeyRequest{KeyType: "rsa", KeyLength: 8192}, want: KeySpec{RSA, 8192, ""}},
		{name: "ECC by length", key: KeyRequest{KeyType: "ECC", KeyLength: 384}, want: KeySpec{ECC, 384, "P-384"}},
		{name: "ECDSA alias by OID", key: KeyRequest{KeyType: "ECDSA", Curve: "1.3.132.0.35"}, want: KeySpec{ECC, 521, "P-521"}},
		{name: "curve name agrees with length", key: KeyRequest{KeyType: "ECC", KeyLength: 256, Curve: "prime256v1"}, want: KeySpec{ECC, 256, "P-256"}},
		{name: "missing type", key: KeyRequest{KeyLength: 256}, rules: []string{RuleRequest}, message: "KeyType is required"},
		{name: "RSA 1024", key: KeyRequest{KeyType: "RSA", KeyLength: 1024}, rules: []string{RuleKeyAlgorithm}, message: "KeyLength 1024 is not allowed by the built-in default policy: RSA sizes allowed are 2048, 3072, 4096, 8192"},
		{name: "RSA without length", key: KeyRequest{KeyType: "RSA"}, rules: []string{RuleRequest}, message: "KeyLength is required"},
		{name: "curve contradicts length", key: KeyRequest{KeyType: "ECC", KeyLength: 384, Curve: "P-256"}, rules: []string{RuleRequest}, message: "Curve P-256 contradicts KeyLength 384"},
		{name: "unknown curve", key: KeyRequest{KeyType: "ECC", Curve: "brainpoolP256r1"}, rules: []string{RuleRequest}, message: "brainpoolP256r1"},
		{name: "Ed25519 without length", key: KeyRequest{KeyType: "ed25519"}, want: KeySpec{Ed25519, 255, ""}},
		{name: "Ed448 with length", key: KeyRequest{KeyType: "ED448", KeyLength: 448}, want: KeySpec{Ed448, 448, ""}},
		{name: "Ed25519 wrong length", key: KeyRequest{KeyType: "ED25519", KeyLength: 256}, rules: []string{RuleRequest}, message: "KeyLength 256 is not valid for KeyType ED25519"},
		{name: "alternative curve", key: KeyRequest{KeyType: "ECC", KeyLength: 256, AlternativeKeyType: "ML-DSA-44", AlternativeCurve: "P-256"},
			rules: []string{RuleRequest}, message: "ECC is not supported as an alternative key"},
		{name: "alternative length mismatch", key: KeyRequest{KeyType: "ECC", KeyLength: 256, AlternativeKeyType: "ML-DSA-65", AlternativeKeyLength: 44},
			rules: []string{RuleRequest}, message: "AlternativeKeyLength 44 does not match ML-DSA-65"},
		{name: "unknown alternative", key: KeyRequest{KeyType: "ECC", KeyLength: 256, AlternativeKeyType: "SLH-DSA"},
			rules: []string{RuleRequest}, message: "SLH-DSA"},
		{name: "two reasons together", key: KeyRequest{KeyType: "RSA", Curve: "P-256", AlternativeKeyType: "ML-DSA-99"},
			rules: []string{RuleRequest, RuleRequest}, message: "Curve is not valid for KeyType RSA; AlternativeKeyType"},
	}
	p := Default()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dec, err := p.Decide(Request{Key: tc.key})
			if tc.rules == nil {
				if err != nil {
					t.Fatal(err)
				}
				if dec.Key != tc.want || dec.Policy != "built-in default" || dec.ResolvedBy != "built-in" {
					t.Fatalf("decision %+v, want key %+v", dec, tc.want)
				}
				return
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("want *Error, got %v", err)
			}
			if len(pe.Violations) != len(tc.rules) {
				t.Fatalf("violations %+v, want rules %v", pe.Violations, tc.rules)
			}
			for i, r := range tc.rules {
				if pe.Violations[i].Rule != r {
					t.Errorf("violation %d rule %s, want %s", i, pe.Violations[i].Rule, r)
				}
			}
			if !strings.Contains(pe.Message(), tc.message) {
				t.Errorf("message %q does not contain %q", pe.Message(), tc.message)
			}
		})
	}
}

func TestDecideAlternative(t *testing.T) {
	dec, err := Default().Decide(Request{Key: KeyRequest{KeyType: "ECC", KeyLength: 256, AlternativeKeyType: "ml-dsa-87", AlternativeKeyLength: 87}})
	if err != nil {
		t.Fatal(err)
	}
	if dec.AltKey == nil || *dec.AltKey != (KeySpec{MLDSA87, 87, ""}) || !dec.AllowSealedAlt {
		t.Fatalf("alt key %+v sealed %v", dec.AltKey, dec.AllowSealedAlt)
	}
	narrow := mustParse(t, `
Settings:
  Policies:
    AlternativeKeyAlgorithms: []
    AllowSealedAlternativeKeys: false
EnrollmentPatterns:
  - {Id: 1, Name: pq-less, AllowedEnrollmentTypes: 4}
DefaultEnrollmentPatternId: 1
`)
	_, err = narrow.Decide(Request{Key: KeyRequest{KeyType: "ECC", KeyLength: 256, AlternativeKeyType: "ML-DSA-44"}, SANs: dnsSANs(t, "a.example.com")})
	if err == nil || !strings.Contains(err.Error(), `AlternativeKeyType ML-DSA-44 is not allowed by enrollment pattern 1 ("pq-less") (the system-wide policy does not allow it): no alternative key is allowed`) {
		t.Fatalf("alternative allowed by a policy without alternatives: %v", err)
	}
	dec, err = narrow.Decide(Request{Key: KeyRequest{KeyType: "ECC", KeyLength: 256}, SANs: dnsSANs(t, "a.example.com")})
	if err != nil || dec.AllowSealedAlt {
		t.Fatalf("decision %+v, %v: want AllowSealedAlternativeKeys false", dec, err)
	}
}

func TestCurveOID(t *testing.T) {
	for name, oid := range map[string]string{"P-256": "1.2.840.10045.3.1.7", "secp384r1": "1.3.132.0.34", "P-521": "1.3.132.0.35", "x": ""} {
		if got := CurveOID(name); got != oid {
			t.Errorf("CurveOID(%s) = %q, want %q", name, got, oid)
		}
	}
}
