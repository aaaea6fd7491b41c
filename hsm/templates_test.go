package hsm

import (
	"crypto/elliptic"
	"errors"
	"testing"

	"github.com/miekg/pkcs11"
)

// TestGenerateTemplates: the templates the benchmark's raw loop uses are
// complete (nothing left for crypto11 or the token to default) and say
// what GenerateKeyPair promises: token objects, sensitive, never
// extractable, sign/verify only, neither modifiable nor copyable.
func TestGenerateTemplates(t *testing.T) {
	ref := KeyRef{ID: []byte{1, 2, 3}, Label: "csrd-templates"}
	cases := []struct {
		spec    KeySpec
		mech    uint
		keyType uint
	}{
		{KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}, pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKK_EC},
		{KeySpec{Type: KeyRSA, Bits: 2048}, pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKK_RSA},
		{KeySpec{Type: KeyEd25519}, ckmECEdwardsKeyPairGen, ckkECEdwards},
	}
	for _, tc := range cases {
		t.Run(tc.spec.String(), func(t *testing.T) {
			tm, err := GenerateTemplates(tc.spec, ref)
			if err != nil {
				t.Fatal(err)
			}
			if tm.Mechanism != tc.mech {
				t.Errorf("mechanism %#x, want %#x", tm.Mechanism, tc.mech)
			}
			want := map[string]struct {
				attrs []*pkcs11.Attribute
				bools map[uint]bool
			}{
				"public": {tm.Public, map[uint]bool{
					pkcs11.CKA_TOKEN: true, pkcs11.CKA_VERIFY: true, pkcs11.CKA_ENCRYPT: false, pkcs11.CKA_WRAP: false,
					pkcs11.CKA_MODIFIABLE: false, ckaCopyable: false,
				}},
				"private": {tm.Private, map[uint]bool{
					pkcs11.CKA_TOKEN: true, pkcs11.CKA_PRIVATE: true, pkcs11.CKA_SENSITIVE: true, pkcs11.CKA_EXTRACTABLE: false,
					pkcs11.CKA_SIGN: true, pkcs11.CKA_DECRYPT: false, pkcs11.CKA_UNWRAP: false, pkcs11.CKA_DERIVE: false,
					pkcs11.CKA_MODIFIABLE: false, ckaCopyable: false,
				}},
			}
			for half, w := range want {
				got := map[uint][]byte{}
				for _, a := range w.attrs {
					got[a.Type] = a.Value
				}
				for typ, v := range w.bools {
					b, ok := got[typ]
					if !ok || len(b) != 1 || (b[0] != 0) != v {
						t.Errorf("%s template: attribute %#x = %v (present %v), want %v", half, typ, b, ok, v)
					}
				}
				if kt := got[pkcs11.CKA_KEY_TYPE]; ulong(kt) != tc.keyType {
					t.Errorf("%s template: CKA_KEY_TYPE %d, want %d", half, ulong(kt), tc.keyType)
				}
				if string(got[pkcs11.CKA_LABEL]) != ref.Label || string(got[pkcs11.CKA_ID]) != string(ref.ID) {
					t.Errorf("%s template: label %q id %x", half, got[pkcs11.CKA_LABEL], got[pkcs11.CKA_ID])
				}
			}
		})
	}
	if _, err := GenerateTemplates(KeySpec{Type: KeyRSA, Bits: 1024}, ref); !errors.Is(err, ErrUnsupported) {
		t.Errorf("RSA-1024: %v, want ErrUnsupported", err)
	}
}

// TestTemplateShapes: every shape a trial may choose keeps the private
// key's protective attributes; only a shape that says so leaves out the
// public key's usage, and only an unlocked one CKA_MODIFIABLE and
// CKA_COPYABLE. Trials try the locked shapes first.
func TestTemplateShapes(t *testing.T) {
	ref := KeyRef{ID: []byte{4}, Label: "csrd-shapes"}
	spec := KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}
	shapes := TemplateShapes()
	for i, shape := range shapes {
		if i > 0 && (shape <= shapes[i-1] || shape.Locked() && !shapes[i-1].Locked()) {
			t.Errorf("shape %v tried after %v", shape, shapes[i-1])
		}
		t.Run(shapeName(shape), func(t *testing.T) {
			pub, priv, err := specAttributes(spec, ref, shape)
			if err != nil {
				t.Fatal(err)
			}
			for typ, want := range map[uint]bool{
				pkcs11.CKA_TOKEN: true, pkcs11.CKA_PRIVATE: true, pkcs11.CKA_SENSITIVE: true, pkcs11.CKA_EXTRACTABLE: false,
				pkcs11.CKA_SIGN: true, pkcs11.CKA_DECRYPT: false, pkcs11.CKA_UNWRAP: false, pkcs11.CKA_DERIVE: false,
			} {
				if a, ok := priv[typ]; !ok || (a.Value[0] != 0) != want {
					t.Errorf("private %s missing or not %v", attrName(typ), want)
				}
			}
			for _, half := range []struct {
				name  string
				attrs map[uint]*pkcs11.Attribute
			}{{"public", pub}, {"private", priv}} {
				for _, typ := range []uint{pkcs11.CKA_MODIFIABLE, ckaCopyable} {
					if _, ok := half.attrs[typ]; ok != shape.Locked() {
						t.Errorf("%s %s present %v, shape locked %v", half.name, attrName(typ), ok, shape.Locked())
					}
				}
			}
			if _, ok := pub[pkcs11.CKA_VERIFY]; ok != shape.PublicUsage() {
				t.Errorf("public CKA_VERIFY present %v, shape states public usage %v", ok, shape.PublicUsage())
			}
			if n := len(shape.omitted()); n == 0 != (shape == TemplateFull) {
				t.Errorf("shape %v omits %v", shape, shape.omitted())
			}
		})
	}
}
