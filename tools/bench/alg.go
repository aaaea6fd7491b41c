package bench

import (
	"crypto/elliptic"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"

	"github.com/csrd/csrd/hsm"
)

// alg is one key type the benchmark measures.
type alg struct {
	Name string
	spec hsm.KeySpec
	// supported is false when this build of hsm has no such key type; the
	// run then reports it instead of measuring it.
	supported bool
	keyType   string // Generate's KeyType and KeyLength
	keyLength int
	slow      bool // RSA: generation takes ~10x longer, measure longer
}

// calibratedBy names the key type whose noise cells say how far a's cells'
// ratios move by chance: a slow key type's (RSA: one long turn per side,
// moved by the prime search's luck) its own, the others P-256's, whose
// token work is as fast and as noisy.
func (a alg) calibratedBy() string {
	if a.slow {
		return a.Name
	}
	return "P-256"
}

// lookupAlg returns the key type the benchmark knows by name.
func lookupAlg(name string) (alg, error) {
	switch strings.ToUpper(name) {
	case "P-256":
		return alg{Name: "P-256", spec: hsm.KeySpec{Type: hsm.KeyECDSA, Bits: 256, Curve: elliptic.P256()},
			supported: true, keyType: "ECC", keyLength: 256}, nil
	case "RSA-2048":
		return alg{Name: "RSA-2048", spec: hsm.KeySpec{Type: hsm.KeyRSA, Bits: 2048},
			supported: true, keyType: "RSA", keyLength: 2048, slow: true}, nil
	case "ED25519":
		return ed25519Alg(), nil
	}
	return alg{}, fmt.Errorf("bench: unknown key type %q (P-256, Ed25519, RSA-2048)", name)
}

// requestBody is the Generate request for worker w's seq-th CSR.
func (a alg) requestBody(w, seq int) []byte {
	host := fmt.Sprintf("bench-%d-%d.example.com", w, seq)
	length := ""
	if a.keyLength != 0 {
		length = fmt.Sprintf(`,"KeyLength":%d`, a.keyLength)
	}
	return fmt.Appendf(nil, `{"Subject":"CN=%s,O=csrd bench,C=US","KeyType":%q%s,"SANs":{"dns":[%q]}}`,
		host, a.keyType, length, host)
}

// publicAttrs are the attributes csrd (crypto11) reads from a new public key.
func (a alg) publicAttrs() []*pkcs11.Attribute {
	if a.spec.Type == hsm.KeyRSA {
		return []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil),
		}
	}
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil),
	}
}

// signInput is the mechanism and input of csrd's one signature per CSR.
func (a alg) signInput(msg string) (uint, []byte) {
	switch a.spec.Type {
	case hsm.KeyRSA:
		return pkcs11.CKM_RSA_PKCS, append(append([]byte{}, digestInfoSHA256...), sha256Of(msg)...)
	case hsm.KeyECDSA:
		return pkcs11.CKM_ECDSA, sha256Of(msg)
	}
	return edSignInput(msg)
}
