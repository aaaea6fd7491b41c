package hsm

import (
	"bytes"
	"crypto/elliptic"
	"encoding/asn1"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// Templates is exactly what GenerateKeyPair hands to C_GenerateKeyPair for
// one key pair. It is exported for the benchmark's raw PKCS#11 loop
// (tools/bench), which must ask the token for precisely what csrd asks,
// so that the comparison measures csrd's overhead and nothing else.
type Templates struct {
	Mechanism       uint // CKM_*_KEY_PAIR_GEN
	Public, Private []*pkcs11.Attribute
}

// GenerateTemplates returns the mechanism and complete attribute templates
// of the key pair spec named by ref, or an error wrapping ErrUnsupported.
func GenerateTemplates(spec KeySpec, ref KeyRef) (Templates, error) {
	pub, priv, err := specTemplates(spec, ref)
	if err != nil {
		return Templates{}, err
	}
	mech := uint(pkcs11.CKM_EC_KEY_PAIR_GEN)
	switch spec.Type {
	case KeyRSA:
		mech = pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN
	case KeyEd25519, KeyEd448:
		mech = ckmECEdwardsKeyPairGen
	}
	return Templates{Mechanism: mech, Public: pub.ToSlice(), Private: priv.ToSlice()}, nil
}

// specTemplates completes keyTemplates for spec. Every attribute crypto11's
// Generate*WithAttributes would add (AddIfNotPresent) is already present, so
// the templates GenerateTemplates reports are the ones the token receives.
func specTemplates(spec KeySpec, ref KeyRef) (pub, priv crypto11.AttributeSet, err error) {
	if err := spec.Validate(); err != nil {
		return nil, nil, err
	}
	pub, priv = keyTemplates(ref)
	switch spec.Type {
	case KeyRSA:
		pub[pkcs11.CKA_KEY_TYPE] = pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA)
		pub[pkcs11.CKA_MODULUS_BITS] = pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, spec.Bits)
		pub[pkcs11.CKA_PUBLIC_EXPONENT] = pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{0x01, 0x00, 0x01})
		priv[pkcs11.CKA_KEY_TYPE] = pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA)
	case KeyECDSA:
		params, err := ecParams(spec.Curve)
		if err != nil {
			return nil, nil, err
		}
		pub[pkcs11.CKA_KEY_TYPE] = pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC)
		pub[pkcs11.CKA_EC_PARAMS] = pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params)
		priv[pkcs11.CKA_KEY_TYPE] = pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC)
	case KeyEd25519, KeyEd448:
		pub[pkcs11.CKA_KEY_TYPE] = pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards)
		pub[pkcs11.CKA_EC_PARAMS] = pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, bytes.Clone(edParamsFor(spec.Type).oid))
		priv[pkcs11.CKA_KEY_TYPE] = pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards)
	default:
		return nil, nil, classErr("key spec", ErrUnsupported, "no templates for %v", spec.Type)
	}
	return pub, priv, nil
}

// Named-curve OIDs (RFC 5480), the CKA_EC_PARAMS crypto11 would choose.
var curveOIDs = map[elliptic.Curve]asn1.ObjectIdentifier{
	elliptic.P256(): {1, 2, 840, 10045, 3, 1, 7},
	elliptic.P384(): {1, 3, 132, 0, 34},
	elliptic.P521(): {1, 3, 132, 0, 35},
}

func ecParams(c elliptic.Curve) ([]byte, error) {
	oid, ok := curveOIDs[c]
	if !ok {
		return nil, classErr("key spec", ErrUnsupported, "ECDSA curve %s", c.Params().Name)
	}
	return asn1.Marshal(oid)
}
