package hsm

import (
	"context"
	"errors"
	"testing"

	"github.com/miekg/pkcs11"
)

// TestGenerateMLDSAInToken: on a token with PKCS#11 3.2 ML-DSA the key pair
// is made in the token and signs; on one without (SoftHSM 2.6.1) the
// in-token path refuses before creating anything, and MLDSAStorage tells
// callers to seal instead.
func TestGenerateMLDSAInToken(t *testing.T) {
	ctx := context.Background()
	before, _ := testTok.CountObjects(ctx)
	if testTok.HasMechanism(ckmMLDSAKeyPairGen) && testTok.HasMechanism(ckmMLDSA) {
		ref := newRef(t, "mldsa")
		key, err := testTok.GenerateMLDSA(ctx, MLDSA65, ref)
		if err != nil {
			t.Fatal(err)
		}
		destroyAtEnd(t, key)
		msg := []byte("in-token ML-DSA")
		sig, err := key.Sign(nil, msg, nil)
		if err != nil || !verifyMLDSA(MLDSA65, key.Public(), msg, sig) {
			t.Fatalf("in-token ML-DSA signature: %v", err)
		}
		attrs, err := testTok.KeyAttributes(ctx, ref)
		if err != nil || !attrs.Sensitive || attrs.Extractable || !attrs.NeverExtractable || attrs.KeyType != ckkMLDSA {
			t.Errorf("attributes %+v, %v", attrs, err)
		}
		if testTok.MLDSAStorage() != AltStorageToken {
			t.Error("MLDSAStorage should be token")
		}
		return
	}
	_, err := testTok.GenerateMLDSA(ctx, MLDSA65, newRef(t, "mldsa"))
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("GenerateMLDSA = %v, want ErrUnsupported", err)
	}
	if after, _ := testTok.CountObjects(ctx); after != before {
		t.Errorf("objects %d -> %d", before, after)
	}
	if testTok.MLDSAStorage() != AltStorageSealed {
		t.Error("MLDSAStorage should be sealed without CKM_ML_DSA_KEY_PAIR_GEN")
	}
}

// TestMLDSATemplates pins what a PKCS#11 3.2 token is asked for: an ML-DSA
// pair with the parameter set on the public template and the same
// protective attributes as every csrd key.
func TestMLDSATemplates(t *testing.T) {
	ref := KeyRef{ID: []byte{1, 2}, Label: "csrd-1-alt"}
	for set, ckp := range map[MLDSA]uint{MLDSA44: 1, MLDSA65: 2, MLDSA87: 3} {
		t.Run(set.String(), func(t *testing.T) {
			if mldsaSchemes[set].ckp != ckp {
				t.Fatalf("CKP for %v = %d, want %d", set, mldsaSchemes[set].ckp, ckp)
			}
			pub, priv := mldsaTemplates(ref, ckp)
			get := func(l []*pkcs11.Attribute, typ uint) []byte {
				for _, a := range l {
					if a.Type == typ {
						return a.Value
					}
				}
				return nil
			}
			if ulong(get(pub, pkcs11.CKA_KEY_TYPE)) != ckkMLDSA || ulong(get(priv, pkcs11.CKA_KEY_TYPE)) != ckkMLDSA {
				t.Error("key type is not CKK_ML_DSA")
			}
			if ulong(get(pub, ckaParameterSet)) != ckp || get(priv, ckaParameterSet) != nil {
				t.Error("CKA_PARAMETER_SET belongs on the public template only")
			}
			for typ, want := range map[uint]byte{
				pkcs11.CKA_SENSITIVE: 1, pkcs11.CKA_EXTRACTABLE: 0, pkcs11.CKA_SIGN: 1, pkcs11.CKA_DECRYPT: 0,
				pkcs11.CKA_UNWRAP: 0, pkcs11.CKA_DERIVE: 0, pkcs11.CKA_TOKEN: 1, pkcs11.CKA_PRIVATE: 1,
				pkcs11.CKA_MODIFIABLE: 0, ckaCopyable: 0,
			} {
				if v := get(priv, typ); len(v) != 1 || v[0] != want {
					t.Errorf("private attribute 0x%x = %v, want %d", typ, v, want)
				}
			}
			for _, typ := range []uint{pkcs11.CKA_MODIFIABLE, ckaCopyable, pkcs11.CKA_ENCRYPT, pkcs11.CKA_WRAP} {
				if v := get(pub, typ); len(v) != 1 || v[0] != 0 {
					t.Errorf("public attribute 0x%x = %v, want 0", typ, v)
				}
			}
			if string(get(priv, pkcs11.CKA_LABEL)) != ref.Label || string(get(pub, pkcs11.CKA_ID)) != string(ref.ID) {
				t.Error("label or id missing")
			}
		})
	}
	if err := MLDSA(66).Validate(); !errors.Is(err, ErrUnsupported) {
		t.Errorf("MLDSA(66).Validate() = %v", err)
	}
}
