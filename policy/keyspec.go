package policy

import (
	"fmt"
	"strings"
)

// Algorithm is a canonical key algorithm name, as Keyfactor spells KeyType.
type Algorithm string

const (
	RSA     Algorithm = "RSA"
	ECC     Algorithm = "ECC"
	Ed25519 Algorithm = "ED25519"
	Ed448   Algorithm = "ED448"

	// ML-DSA (FIPS 204) parameter sets, only as alternative keys of a
	// hybrid CSR.
	MLDSA44 Algorithm = "ML-DSA-44"
	MLDSA65 Algorithm = "ML-DSA-65"
	MLDSA87 Algorithm = "ML-DSA-87"
)

// mldsaSets maps each ML-DSA parameter set to the number Keyfactor clients
// may send as AlternativeKeyLength.
var mldsaSets = map[Algorithm]int{MLDSA44: 44, MLDSA65: 65, MLDSA87: 87}

// KeySpec is a fully resolved key: the algorithm and, for RSA, the modulus
// size in bits, for ECC the named curve ("P-256", "P-384", "P-521") and its
// size, for EdDSA 255 or 448; for ML-DSA the parameter-set number (44, 65,
// 87).
type KeySpec struct {
	Algorithm Algorithm `json:"algorithm"`
	Bits      int       `json:"bits"`
	Curve     string    `json:"curve,omitempty"`
}

func (k KeySpec) String() string {
	if k.Curve != "" {
		return fmt.Sprintf("%s %s", k.Algorithm, k.Curve)
	}
	return fmt.Sprintf("%s %d", k.Algorithm, k.Bits)
}

// KeyRequest is the key part of a Generate request exactly as sent; zero
// values mean "absent" (Keyfactor's SDK sends "" and 0 for unset fields).
type KeyRequest struct {
	KeyType              string
	KeyLength            int
	Curve                string
	AlternativeKeyType   string
	AlternativeKeyLength int
	AlternativeCurve     string
}

// curve describes one supported named curve.
type curve struct {
	name  string
	oid   string
	bits  int
	alias []string
}

var curves = []curve{
	{"P-256", "1.2.840.10045.3.1.7", 256, []string{"prime256v1", "secp256r1", "nistp256", "p256"}},
	{"P-384", "1.3.132.0.34", 384, []string{"secp384r1", "nistp384", "p384"}},
	{"P-521", "1.3.132.0.35", 521, []string{"secp521r1", "nistp521", "p521"}},
}

func lookupCurve(s string) (curve, bool) {
	for _, c := range curves {
		if strings.EqualFold(s, c.name) || s == c.oid {
			return c, true
		}
		for _, a := range c.alias {
			if strings.EqualFold(s, a) {
				return c, true
			}
		}
	}
	return curve{}, false
}

func curveByBits(bits int) (curve, bool) {
	for _, c := range curves {
		if c.bits == bits {
			return c, true
		}
	}
	return curve{}, false
}

// CurveName returns the canonical name of a curve given by name, alias or
// dotted OID ("" if unknown).
func CurveName(s string) string {
	if c, ok := lookupCurve(s); ok {
		return c.name
	}
	return ""
}

// CurveOID returns the dotted OID of a canonical curve name.
func CurveOID(name string) string {
	if c, ok := lookupCurve(name); ok {
		return c.oid
	}
	return ""
}

// ResolveKey turns what the client sent into a KeySpec. It only checks that
// the request is self-consistent (a known algorithm, a Curve that agrees
// with KeyLength); whether the spec is allowed is Decide's business.
func ResolveKey(kr KeyRequest) (KeySpec, error) {
	var vs Violations
	spec := KeySpec{}
	kt := strings.ToUpper(strings.TrimSpace(kr.KeyType))
	switch kt {
	case "":
		vs.add(RuleRequest, "KeyType", "KeyType is required (RSA, ECC, ED25519 or ED448)")
	case "RSA":
		spec = resolveRSA(kr, &vs)
	case "ECC", "ECDSA", "EC":
		spec = resolveECC(kr, &vs)
	case "ED25519", "ED448":
		spec = resolveEdDSA(kt, kr, &vs)
	default:
		vs.add(RuleRequest, "KeyType", fmt.Sprintf("KeyType %q is not a key type (RSA, ECC, ED25519 or ED448)", kr.KeyType))
	}
	if err := vs.err(); err != nil {
		return KeySpec{}, err
	}
	return spec, nil
}

// resolveRSA takes the modulus size from KeyLength, which RSA requires.
func resolveRSA(kr KeyRequest, vs *Violations) KeySpec {
	switch {
	case kr.Curve != "":
		vs.add(RuleRequest, "Curve", "Curve is not valid for KeyType RSA")
	case kr.KeyLength == 0:
		vs.add(RuleRequest, "KeyLength", "KeyLength is required for KeyType RSA")
	case kr.KeyLength < 0:
		vs.add(RuleRequest, "KeyLength", fmt.Sprintf("KeyLength %d is not a key size", kr.KeyLength))
	}
	return KeySpec{Algorithm: RSA, Bits: kr.KeyLength}
}

// resolveECC takes the curve from Curve, or from KeyLength when Curve is
// absent; when both are given they must agree.
func resolveECC(kr KeyRequest, vs *Violations) KeySpec {
	spec := KeySpec{Algorithm: ECC}
	var c curve
	var ok bool
	switch {
	case kr.Curve != "":
		c, ok = lookupCurve(strings.TrimSpace(kr.Curve))
		if !ok {
			vs.add(RuleRequest, "Curve", fmt.Sprintf("Curve %q is not a supported curve (1.2.840.10045.3.1.7 P-256, 1.3.132.0.34 P-384, 1.3.132.0.35 P-521)", kr.Curve))
		} else if kr.KeyLength != 0 && kr.KeyLength != c.bits {
			vs.add(RuleRequest, "Curve", fmt.Sprintf("Curve %s contradicts KeyLength %d", c.name, kr.KeyLength))
		}
	case kr.KeyLength == 0:
		vs.add(RuleRequest, "KeyLength", "KeyLength or Curve is required for KeyType ECC")
	default:
		c, ok = curveByBits(kr.KeyLength)
		if !ok {
			vs.add(RuleRequest, "KeyLength", fmt.Sprintf("KeyLength %d is not an ECC size (256, 384 or 521)", kr.KeyLength))
		}
	}
	if ok {
		spec.Curve, spec.Bits = c.name, c.bits
	}
	return spec
}

// resolveEdDSA accepts no Curve and, as KeyLength, only the algorithm's
// one size (or none).
func resolveEdDSA(kt string, kr KeyRequest, vs *Violations) KeySpec {
	spec := KeySpec{Algorithm: Ed25519, Bits: 255}
	if kt == "ED448" {
		spec = KeySpec{Algorithm: Ed448, Bits: 448}
	}
	switch {
	case kr.Curve != "":
		vs.add(RuleRequest, "Curve", fmt.Sprintf("Curve is not valid for KeyType %s", kt))
	case kr.KeyLength != 0 && kr.KeyLength != spec.Bits:
		vs.add(RuleRequest, "KeyLength", fmt.Sprintf("KeyLength %d is not valid for KeyType %s (use %d or leave it out)", kr.KeyLength, kt, spec.Bits))
	}
	return spec
}

// ResolveAltKey resolves the alternative (post-quantum) key of a hybrid
// request; ok is false when the request asks for none.
func ResolveAltKey(kr KeyRequest) (spec KeySpec, ok bool, err error) {
	var vs Violations
	if kr.AlternativeCurve != "" {
		vs.add(RuleRequest, "AlternativeCurve", "ECC is not supported as an alternative key")
	}
	at := strings.ToUpper(strings.TrimSpace(kr.AlternativeKeyType))
	switch {
	case at == "" && kr.AlternativeKeyLength != 0:
		vs.add(RuleRequest, "AlternativeKeyType", "AlternativeKeyLength needs an AlternativeKeyType (ML-DSA-44, ML-DSA-65 or ML-DSA-87)")
	case at == "":
	default:
		alg := Algorithm(strings.ReplaceAll(at, "MLDSA", "ML-DSA"))
		n, known := mldsaSets[alg]
		switch {
		case !known:
			vs.add(RuleRequest, "AlternativeKeyType", fmt.Sprintf("AlternativeKeyType %q is not an alternative key type (ML-DSA-44, ML-DSA-65 or ML-DSA-87)", kr.AlternativeKeyType))
		case kr.AlternativeKeyLength != 0 && kr.AlternativeKeyLength != n:
			vs.add(RuleRequest, "AlternativeKeyLength", fmt.Sprintf("AlternativeKeyLength %d does not match %s (use %d or leave it out)", kr.AlternativeKeyLength, alg, n))
		default:
			spec, ok = KeySpec{Algorithm: alg, Bits: n}, true
		}
	}
	if err := vs.err(); err != nil {
		return KeySpec{}, false, err
	}
	return spec, ok, nil
}

// CurveBits returns the size of a canonical curve name (0 if unknown).
func CurveBits(name string) int {
	if c, ok := lookupCurve(name); ok {
		return c.bits
	}
	return 0
}

// KeySize is the size Keyfactor clients send as KeyLength (or
// AlternativeKeyLength) for algorithms with one fixed size: 255 and 448
// for EdDSA, the parameter set for ML-DSA; 0 for RSA and ECC.
func KeySize(a Algorithm) int { return edOrMLDSASize(a) }
