package csr

import (
	"crypto"
	"encoding/asn1"
	"fmt"
	"io"
	"slices"
)

// The hybrid-certificate attributes of ITU-T X.509 (10/2019) 9.8, used as
// top-level CertificationRequestInfo attributes the way BouncyCastle (and so
// EJBCA) builds and verifies alternative-key CSRs.
var (
	oidSubjectAltPublicKeyInfo = asn1.ObjectIdentifier{2, 5, 29, 72}
	oidAltSignatureAlgorithm   = asn1.ObjectIdentifier{2, 5, 29, 73}
	oidAltSignatureValue       = asn1.ObjectIdentifier{2, 5, 29, 74}
)

// BuildHybrid builds a CSR that carries a second, alternative public key
// (e.g. ML-DSA beside a classical HSM key) and is signed by both:
//
//  1. the CRI is assembled with req's attributes plus subjectAltPublicKeyInfo
//     (2.5.29.72, the alternative key's SubjectPublicKeyInfo) and
//     altSignatureAlgorithm (2.5.29.73), without altSignatureValue;
//  2. alt signs the DER of that CRI (the signature is checked at once);
//  3. altSignatureValue (2.5.29.74, a BIT STRING) is added and primary signs
//     the complete CRI, as SignCRI does for any CSR.
//
// Each attribute is single-valued, and the attribute SET is DER-sorted
// (X.690 11.6) both times: verifiers such as BouncyCastle's
// PKCS10CertificationRequest.isAltSignatureValid drop 2.5.29.74 and
// re-encode the SET in DER, so an unsorted SET would break both signatures.
// ExtraAttributes must not already hold any of the three types.
func BuildHybrid(rand io.Reader, req *Request, primary, alt crypto.Signer) ([]byte, error) {
	if primary == nil || alt == nil {
		return nil, fmt.Errorf("%w: hybrid CSR needs a primary and an alternative signer", ErrInvalidRequest)
	}
	if req == nil {
		return nil, fmt.Errorf("%w: nil request", ErrInvalidRequest)
	}
	altPub := alt.Public()
	altSPKI, err := SPKI(altPub)
	if err != nil {
		return nil, fmt.Errorf("alternative key: %w", err)
	}
	altAlg, altOpts, err := SignatureAlgorithm(altPub)
	if err != nil {
		return nil, fmt.Errorf("alternative key: %w", err)
	}
	altAlgDER, err := asn1.Marshal(altAlg)
	if err != nil {
		return nil, fmt.Errorf("csr: alternative signature algorithm: %w", err)
	}

	// Step 1: the CRI the alternative key signs.
	withAlt := *req
	withAlt.ExtraAttributes = append(slices.Clone(req.ExtraAttributes),
		Attribute{Type: oidSubjectAltPublicKeyInfo, Values: []asn1.RawValue{{FullBytes: altSPKI}}},
		Attribute{Type: oidAltSignatureAlgorithm, Values: []asn1.RawValue{{FullBytes: altAlgDER}}},
	)
	for _, a := range req.ExtraAttributes {
		if a.Type.Equal(oidAltSignatureValue) {
			return nil, fmt.Errorf("%w: attribute %s is set by BuildHybrid", ErrInvalidRequest, a.Type)
		}
	}
	preCRI, err := BuildCRI(&withAlt, primary.Public())
	if err != nil {
		return nil, err
	}

	// Step 2: the alternative signature, verified before anything uses it.
	altSig, err := signChecked(rand, preCRI, alt, altOpts)
	if err != nil {
		return nil, fmt.Errorf("alternative key: %w", err)
	}

	// Step 3: the complete CRI, signed by the primary key.
	sigVal, err := asn1.Marshal(asn1.BitString{Bytes: altSig, BitLength: 8 * len(altSig)})
	if err != nil {
		return nil, fmt.Errorf("csr: alternative signature: %w", err)
	}
	withAlt.ExtraAttributes = append(withAlt.ExtraAttributes,
		Attribute{Type: oidAltSignatureValue, Values: []asn1.RawValue{{FullBytes: sigVal}}})
	cri, err := BuildCRI(&withAlt, primary.Public())
	if err != nil {
		return nil, err
	}
	return SignCRI(rand, cri, primary)
}

// signChecked signs msg (hashed as opts says) and verifies the signature
// under the signer's own public key. A signer that is a
// crypto.MessageSigner gets the whole message (an HSM that hashes and signs
// in one mechanism needs it); any other gets the digest.
func signChecked(rand io.Reader, msg []byte, signer crypto.Signer, opts crypto.SignerOpts) ([]byte, error) {
	in := msg
	if h := opts.HashFunc(); h != 0 {
		if !h.Available() {
			return nil, fmt.Errorf("csr: hash %v not linked in", h)
		}
		d := h.New()
		d.Write(msg)
		in = d.Sum(nil)
	}
	var (
		sig []byte
		err error
	)
	if ms, ok := signer.(crypto.MessageSigner); ok {
		sig, err = ms.SignMessage(rand, msg, opts)
	} else {
		sig, err = signer.Sign(rand, in, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("csr: signing: %w", err)
	}
	if err := verifySignature(signer.Public(), opts.HashFunc(), in, sig); err != nil {
		return nil, err
	}
	return sig, nil
}
