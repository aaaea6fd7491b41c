package csr

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"

	"github.com/cloudflare/circl/sign/ed448"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
)

var (
	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidEd25519         = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidEd448           = asn1.ObjectIdentifier{1, 3, 101, 113}
	// RFC 9881: id-ml-dsa-44/65/87, parameters absent in both the
	// SubjectPublicKeyInfo and the signature AlgorithmIdentifier.
	oidMLDSA44 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 17}
	oidMLDSA65 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 18}
	oidMLDSA87 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 19}
)

// rawKey returns the OID and the raw public key bytes of the key types whose
// SubjectPublicKeyInfo csr builds itself (RFC 8410 Ed448, RFC 9881 ML-DSA):
// AlgorithmIdentifier without parameters, the key bytes as the BIT STRING.
func rawKey(pub crypto.PublicKey) (asn1.ObjectIdentifier, []byte, bool) {
	switch k := pub.(type) {
	case ed448.PublicKey:
		return oidEd448, k, len(k) == ed448.PublicKeySize
	case *mldsa44.PublicKey:
		return oidMLDSA44, k.Bytes(), true
	case *mldsa65.PublicKey:
		return oidMLDSA65, k.Bytes(), true
	case *mldsa87.PublicKey:
		return oidMLDSA87, k.Bytes(), true
	}
	return nil, nil, false
}

// SignatureAlgorithm picks the CSR signature algorithm for a public key and
// the SignerOpts to pass to crypto.Signer.Sign:
//
//	RSA            sha256WithRSAEncryption (NULL parameters), crypto.SHA256
//	ECDSA P-256    ecdsa-with-SHA256 (parameters absent),     crypto.SHA256
//	ECDSA P-384    ecdsa-with-SHA384,                         crypto.SHA384
//	ECDSA P-521    ecdsa-with-SHA512,                         crypto.SHA512
//	Ed25519        id-Ed25519 1.3.101.112,                    crypto.Hash(0)
//	Ed448 (circl)  id-Ed448 1.3.101.113,                      crypto.Hash(0)
//	ML-DSA (circl) id-ml-dsa-44/65/87 (RFC 9881),             crypto.Hash(0)
//
// The hash follows the curve size (RFC 5480 4) so the signature is never
// weaker than the key; other curves and key types are ErrUnsupportedKey.
func SignatureAlgorithm(pub crypto.PublicKey) (pkix.AlgorithmIdentifier, crypto.SignerOpts, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return pkix.AlgorithmIdentifier{Algorithm: oidSHA256WithRSA, Parameters: asn1.NullRawValue}, crypto.SHA256, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA256}, crypto.SHA256, nil
		case elliptic.P384():
			return pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA384}, crypto.SHA384, nil
		case elliptic.P521():
			return pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA512}, crypto.SHA512, nil
		}
		return pkix.AlgorithmIdentifier{}, nil, fmt.Errorf("%w: ECDSA curve %s", ErrUnsupportedKey, curveName(k.Curve))
	case ed25519.PublicKey:
		return pkix.AlgorithmIdentifier{Algorithm: oidEd25519}, crypto.Hash(0), nil
	case ed448.PublicKey, *mldsa44.PublicKey, *mldsa65.PublicKey, *mldsa87.PublicKey:
		oid, _, _ := rawKey(pub)
		return pkix.AlgorithmIdentifier{Algorithm: oid}, crypto.Hash(0), nil
	}
	return pkix.AlgorithmIdentifier{}, nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
}

func curveName(c elliptic.Curve) string {
	if c == nil || c.Params() == nil {
		return "<nil>"
	}
	return c.Params().Name
}

// SPKI returns the DER SubjectPublicKeyInfo of pub. crypto/x509 handles RSA,
// ECDSA and Ed25519; Ed448 (RFC 8410) and ML-DSA (RFC 9881) are built here
// because x509 cannot.
func SPKI(pub crypto.PublicKey) ([]byte, error) {
	switch k := pub.(type) {
	case ed448.PublicKey, *mldsa44.PublicKey, *mldsa65.PublicKey, *mldsa87.PublicKey:
		oid, raw, ok := rawKey(pub)
		if !ok {
			return nil, fmt.Errorf("%w: %T of %d bytes", ErrUnsupportedKey, k, len(raw))
		}
		return asn1.Marshal(struct {
			Algorithm pkix.AlgorithmIdentifier
			PublicKey asn1.BitString
		}{pkix.AlgorithmIdentifier{Algorithm: oid}, asn1.BitString{Bytes: raw, BitLength: 8 * len(raw)}})
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		if _, _, err := SignatureAlgorithm(pub); err != nil {
			return nil, err // e.g. an ECDSA curve we will not sign with
		}
		b, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnsupportedKey, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
}

// SPKISHA256 is SHA-256 over the DER SubjectPublicKeyInfo: the stable
// identifier of a key pair used to index records and to match an issued
// certificate back to its key.
func SPKISHA256(pub crypto.PublicKey) ([]byte, error) {
	spki, err := SPKI(pub)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(spki)
	return sum[:], nil
}
