package csr

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"

	"github.com/cloudflare/circl/sign/ed448"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
)

// SignCRI signs a DER CertificationRequestInfo with signer and returns the
// DER CertificationRequest { cri, signatureAlgorithm, signature }. The
// digest is taken per SignatureAlgorithm; Ed25519, Ed448 and ML-DSA sign
// the whole message with crypto.Hash(0). The signature is checked against the
// signer's own public key before it is returned, so an HSM fault or a
// mismatched key never yields a CSR (ErrBadSignature).
func SignCRI(rand io.Reader, cri []byte, signer crypto.Signer) ([]byte, error) {
	if signer == nil {
		return nil, fmt.Errorf("%w: nil signer", ErrInvalidRequest)
	}
	pub := signer.Public()
	alg, opts, err := SignatureAlgorithm(pub)
	if err != nil {
		return nil, err
	}
	var rest asn1.RawValue
	if trailing, err := asn1.Unmarshal(cri, &rest); err != nil || len(trailing) != 0 || rest.Tag != asn1.TagSequence {
		return nil, fmt.Errorf("%w: CertificationRequestInfo is not a single DER SEQUENCE", ErrInvalidRequest)
	}
	sig, err := signChecked(rand, cri, signer, opts)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct {
		CRI       asn1.RawValue
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}{asn1.RawValue{FullBytes: cri}, alg, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
}

// verifySignature checks sig over msg (a digest, or the message for EdDSA).
// For ECDSA it also insists on a strict DER Ecdsa-Sig-Value: PKCS#11 itself
// returns raw r||s, and crypto11 converts it; a signer that does not would
// produce a CSR nobody can verify.
func verifySignature(pub crypto.PublicKey, h crypto.Hash, msg, sig []byte) error {
	ok := false
	switch k := pub.(type) {
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(k, h, msg, sig) == nil
	case *ecdsa.PublicKey:
		if !isStrictECDSADER(sig) {
			return fmt.Errorf("%w: ECDSA signature is not DER Ecdsa-Sig-Value", ErrBadSignature)
		}
		ok = ecdsa.VerifyASN1(k, msg, sig)
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, msg, sig)
	case ed448.PublicKey:
		ok = ed448.Verify(k, msg, sig, "")
	case *mldsa44.PublicKey: // pure ML-DSA, empty context (RFC 9881)
		ok = mldsa44.Verify(k, msg, nil, sig)
	case *mldsa65.PublicKey:
		ok = mldsa65.Verify(k, msg, nil, sig)
	case *mldsa87.PublicKey:
		ok = mldsa87.Verify(k, msg, nil, sig)
	}
	if !ok {
		return fmt.Errorf("%w: does not verify under the signer's public key", ErrBadSignature)
	}
	return nil
}

// isStrictECDSADER reports whether sig is exactly DER SEQUENCE{r, s} with
// positive r and s and nothing after it.
func isStrictECDSADER(sig []byte) bool {
	var v struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(sig, &v)
	if err != nil || len(rest) != 0 || v.R.Sign() <= 0 || v.S.Sign() <= 0 {
		return false
	}
	again, err := asn1.Marshal(v)
	return err == nil && string(again) == string(sig)
}
