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
// of the key pair spec named by ref with the full template shape (what
// SoftHSM takes), or an error wrapping ErrUnsupported. Token.Templates
// gives the shape a token's profile chose.
func GenerateTemplates(spec KeySpec, ref KeyRef) (Templates, error) {
	return specTemplates(spec, ref, TemplateFull)
}

// Templates is GenerateTemplates with the template shape t's profile
// chose for spec's key type.
func (t *Token) Templates(spec KeySpec, ref KeyRef) (Templates, error) {
	return specTemplates(spec, ref, t.Profile().Key(spec.Type).Template)
}

// ShapeTemplates is GenerateTemplates with template shape shape, for the
// benchmark's raw loop on a token whose profile chose another shape.
func ShapeTemplates(spec KeySpec, ref KeyRef, shape Template) (Templates, error) {
	return specTemplates(spec, ref, shape)
}

// genMechanism is the key-pair generation mechanism of each key type.
var genMechanism = map[KeyType]uint{
	KeyRSA: pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, KeyECDSA: pkcs11.CKM_EC_KEY_PAIR_GEN,
	KeyEd25519: ckmECEdwardsKeyPairGen, KeyEd448: ckmECEdwardsKeyPairGen,
}

func specTemplates(spec KeySpec, ref KeyRef, shape Template) (Templates, error) {
	pub, priv, err := specAttributes(spec, ref, shape)
	if err != nil {
		return Templates{}, err
	}
	return Templates{Mechanism: genMechanism[spec.Type], Public: pub.ToSlice(), Private: priv.ToSlice()}, nil
}

// specAttributes completes keyTemplates for spec. With the full shape,
// every attribute crypto11's Generate*WithAttributes would add
// (AddIfNotPresent) is already present, so the templates GenerateTemplates
// reports are the ones the token receives; other shapes are generated on
// the raw handle (rawkey.go), where nothing is added.
func specAttributes(spec KeySpec, ref KeyRef, shape Template) (pub, priv crypto11.AttributeSet, err error) {
	if err := spec.Validate(); err != nil {
		return nil, nil, err
	}
	pub, priv = keyTemplates(ref, shape)
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

// PKCS#11 2.40 attributes miekg/pkcs11 v1.1.2 lacks.
const (
	ckaCopyable    = 0x171 // CKA_COPYABLE
	ckaDestroyable = 0x172 // CKA_DESTROYABLE
)

// keyTemplates returns the attribute templates of a signing-only key pair
// of the given shape (profile.go), the one place they are written. Every
// attribute is set here rather than left to crypto11 (whose AddIfNotPresent
// only fills gaps: CKA_DECRYPT and CKA_ENCRYPT true for RSA) or to token
// defaults; a shape leaves out only what it says it does.
//
// Signing-only is locked in: CKA_MODIFIABLE false on both halves, so no
// logged-in session can turn CKA_DECRYPT, CKA_DERIVE or CKA_UNWRAP on later
// with C_SetAttributeValue, and CKA_COPYABLE false, so no C_CopyObject makes
// a twin with them on. Neither stops destruction (that is CKA_DESTROYABLE),
// which Delete and reconciliation need. Only an unlocked shape leaves them
// out, and only a token whose profile shows it refuses every locked shape
// gets one. Whether a token enforces CKA_MODIFIABLE is its own affair: the
// profile's trial finds out (KeyProfile.ModifiableEnforced).
func keyTemplates(ref KeyRef, shape Template) (pub, priv crypto11.AttributeSet) {
	common := func(class uint) crypto11.AttributeSet {
		s := crypto11.AttributeSet{
			pkcs11.CKA_CLASS: pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
			pkcs11.CKA_TOKEN: pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.CKA_ID:    pkcs11.NewAttribute(pkcs11.CKA_ID, bytes.Clone(ref.ID)),
			pkcs11.CKA_LABEL: pkcs11.NewAttribute(pkcs11.CKA_LABEL, ref.Label),
		}
		if shape.Locked() {
			s[pkcs11.CKA_MODIFIABLE] = pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false)
			s[ckaCopyable] = pkcs11.NewAttribute(ckaCopyable, false)
		}
		return s
	}
	pub = common(pkcs11.CKO_PUBLIC_KEY)
	for a, v := range map[uint]bool{
		pkcs11.CKA_VERIFY:         true,
		pkcs11.CKA_ENCRYPT:        false,
		pkcs11.CKA_WRAP:           false,
		pkcs11.CKA_VERIFY_RECOVER: false,
	} {
		pub[a] = pkcs11.NewAttribute(a, v)
	}
	if !shape.PublicUsage() {
		delete(pub, pkcs11.CKA_VERIFY)
		delete(pub, pkcs11.CKA_ENCRYPT)
	}
	priv = common(pkcs11.CKO_PRIVATE_KEY)
	for a, v := range map[uint]bool{
		pkcs11.CKA_PRIVATE:      true,
		pkcs11.CKA_SENSITIVE:    true,
		pkcs11.CKA_EXTRACTABLE:  false,
		pkcs11.CKA_SIGN:         true,
		pkcs11.CKA_DECRYPT:      false,
		pkcs11.CKA_UNWRAP:       false,
		pkcs11.CKA_DERIVE:       false,
		pkcs11.CKA_SIGN_RECOVER: false,
	} {
		priv[a] = pkcs11.NewAttribute(a, v)
	}
	return pub, priv
}

// mldsaTemplates are keyTemplates for CKK_ML_DSA with CKA_PARAMETER_SET.
func mldsaTemplates(ref KeyRef, ckp uint) (pub, priv []*pkcs11.Attribute) {
	pubT, privT := keyTemplates(ref, TemplateFull)
	for _, m := range []map[uint]*pkcs11.Attribute{pubT, privT} {
		m[pkcs11.CKA_KEY_TYPE] = pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkMLDSA)
	}
	pubT[ckaParameterSet] = pkcs11.NewAttribute(ckaParameterSet, ckp)
	return attrList(pubT), attrList(privT)
}

// kekTemplate matches (and, with an ID and CKA_TOKEN, creates) csrd's KEK.
// The search insists on the protective attributes, so an extractable AES
// key someone labelled csrd-kek-v1 is never used to seal anything. It does
// not insist on CKA_MODIFIABLE false: KEKs made before csrd locked them
// still open what they sealed.
func kekTemplate(id []byte) []*pkcs11.Attribute {
	t := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, KEKLabel),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
	}
	if id != nil {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_ID, bytes.Clone(id)))
	}
	return t
}

// kekGenerateTemplate is what C_GenerateKey makes the KEK with: AES-256
// that only encrypts and decrypts, neither modifiable (no CKA_WRAP or
// CKA_UNWRAP turned on later) nor copyable, and with v240 (a PKCS#11 2.40
// or later token) not destroyable either. Without v240 the token knows
// neither CKA_COPYABLE nor CKA_DESTROYABLE.
func kekGenerateTemplate(id []byte, v240 bool) []*pkcs11.Attribute {
	t := append(kekTemplate(id),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false),
	)
	if v240 {
		t = append(t, pkcs11.NewAttribute(ckaCopyable, false), pkcs11.NewAttribute(ckaDestroyable, false))
	}
	return t
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
