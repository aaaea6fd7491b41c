// Package csrtest checks CSRs for tests, independently of package csr: it
// parses with encoding/asn1 alone and verifies with crypto/x509, circl and
// openssl, so a test never checks csr's encoder against itself. It covers
// what crypto/x509 cannot: Ed448 signatures and the hybrid (alternative
// key) attributes 2.5.29.72/73/74 as BouncyCastle verifies them.
package csrtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cloudflare/circl/sign/ed448"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
)

// OIDs, spelled out here rather than imported from csr.
var (
	OIDSubjectAltPublicKeyInfo = asn1.ObjectIdentifier{2, 5, 29, 72}
	OIDAltSignatureAlgorithm   = asn1.ObjectIdentifier{2, 5, 29, 73}
	OIDAltSignatureValue       = asn1.ObjectIdentifier{2, 5, 29, 74}
	OIDExtensionRequest        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14}
	OIDEd25519                 = asn1.ObjectIdentifier{1, 3, 101, 112}
	OIDEd448                   = asn1.ObjectIdentifier{1, 3, 101, 113}
	OIDMLDSA44                 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 17}
	OIDMLDSA65                 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 18}
	OIDMLDSA87                 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 19}
)

// MLDSASizes are the FIPS 204 public key and signature sizes per OID.
var MLDSASizes = map[string]struct{ Public, Signature int }{
	OIDMLDSA44.String(): {mldsa44.PublicKeySize, mldsa44.SignatureSize},
	OIDMLDSA65.String(): {mldsa65.PublicKeySize, mldsa65.SignatureSize},
	OIDMLDSA87.String(): {mldsa87.PublicKeySize, mldsa87.SignatureSize},
}

// Attribute is one CRI attribute as found: its type, its values and its
// complete DER encoding.
type Attribute struct {
	Type   asn1.ObjectIdentifier
	Values []asn1.RawValue
	DER    []byte
}

// Request is a parsed CertificationRequest.
type Request struct {
	CRI        []byte // DER of the CertificationRequestInfo as signed
	Version    asn1.RawValue
	Subject    asn1.RawValue
	SPKI       asn1.RawValue
	Attributes []Attribute // in encoded order
	SigAlg     asn1.RawValue
	Signature  []byte
}

// Parse decodes a DER CSR strictly (no trailing bytes anywhere).
func Parse(der []byte) (*Request, error) {
	var outer struct {
		CRI    asn1.RawValue
		SigAlg asn1.RawValue
		Sig    asn1.BitString
	}
	if rest, err := asn1.Unmarshal(der, &outer); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("csrtest: CertificationRequest: %v (%d trailing bytes)", err, len(rest))
	}
	r := &Request{CRI: outer.CRI.FullBytes, SigAlg: outer.SigAlg, Signature: outer.Sig.Bytes}
	var cri struct {
		Version, Subject, SPKI, Attrs asn1.RawValue
	}
	if rest, err := asn1.Unmarshal(outer.CRI.FullBytes, &cri); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("csrtest: CertificationRequestInfo: %v", err)
	}
	if cri.Attrs.Class != asn1.ClassContextSpecific || cri.Attrs.Tag != 0 || !cri.Attrs.IsCompound {
		return nil, errors.New("csrtest: attributes are not [0] IMPLICIT SET")
	}
	r.Version, r.Subject, r.SPKI = cri.Version, cri.Subject, cri.SPKI
	for rest := cri.Attrs.Bytes; len(rest) > 0; {
		var raw asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &raw); err != nil {
			return nil, fmt.Errorf("csrtest: attribute: %v", err)
		}
		var a struct {
			Type   asn1.ObjectIdentifier
			Values []asn1.RawValue `asn1:"set"`
		}
		if trail, err := asn1.Unmarshal(raw.FullBytes, &a); err != nil || len(trail) != 0 {
			return nil, fmt.Errorf("csrtest: attribute: %v", err)
		}
		r.Attributes = append(r.Attributes, Attribute{Type: a.Type, Values: a.Values, DER: raw.FullBytes})
	}
	return r, nil
}

// Attribute returns the single value of the attribute typ; an error if it
// is absent, repeated or has other than one value.
func (r *Request) Attribute(typ asn1.ObjectIdentifier) (asn1.RawValue, error) {
	var found []Attribute
	for _, a := range r.Attributes {
		if a.Type.Equal(typ) {
			found = append(found, a)
		}
	}
	if len(found) != 1 || len(found[0].Values) != 1 {
		return asn1.RawValue{}, fmt.Errorf("csrtest: attribute %s: %d present, want exactly one single-valued", typ, len(found))
	}
	return found[0].Values[0], nil
}

// AttributesSorted reports whether the attribute SET is in DER order
// (X.690 11.6: ascending by encoding).
func (r *Request) AttributesSorted() bool {
	return slices.IsSortedFunc(r.Attributes, func(a, b Attribute) int { return bytes.Compare(a.DER, b.DER) })
}

// CRIWithoutAltSignature re-encodes the CRI with 2.5.29.74 removed and the
// remaining attributes DER-sorted — what BouncyCastle's
// isAltSignatureValid verifies the alternative signature over.
func (r *Request) CRIWithoutAltSignature() ([]byte, error) {
	var kept [][]byte
	for _, a := range r.Attributes {
		if !a.Type.Equal(OIDAltSignatureValue) {
			kept = append(kept, a.DER)
		}
	}
	slices.SortFunc(kept, bytes.Compare)
	attrs, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: bytes.Join(kept, nil)})
	if err != nil {
		return nil, err
	}
	body := slices.Concat(r.Version.FullBytes, r.Subject.FullBytes, r.SPKI.FullBytes, attrs)
	return asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: body})
}

// AltKey is the decoded alternative key of a hybrid CSR.
type AltKey struct {
	Algorithm asn1.ObjectIdentifier
	// ParamsAbsent: the SPKI's AlgorithmIdentifier is SEQUENCE { OID } only.
	ParamsAbsent bool
	PublicKey    []byte
	// SigAlgorithm, SigParamsAbsent: the same for altSignatureAlgorithm.
	SigAlgorithm    asn1.ObjectIdentifier
	SigParamsAbsent bool
	Signature       []byte
}

// Alt decodes the three hybrid attributes.
func (r *Request) Alt() (*AltKey, error) {
	spki, err := r.Attribute(OIDSubjectAltPublicKeyInfo)
	if err != nil {
		return nil, err
	}
	alg, err := r.Attribute(OIDAltSignatureAlgorithm)
	if err != nil {
		return nil, err
	}
	val, err := r.Attribute(OIDAltSignatureValue)
	if err != nil {
		return nil, err
	}
	var k AltKey
	var s struct {
		Alg asn1.RawValue
		Key asn1.BitString
	}
	if rest, err := asn1.Unmarshal(spki.FullBytes, &s); err != nil || len(rest) != 0 || s.Key.BitLength%8 != 0 {
		return nil, fmt.Errorf("csrtest: subjectAltPublicKeyInfo: %v", err)
	}
	k.PublicKey = s.Key.Bytes
	if k.Algorithm, k.ParamsAbsent, err = algID(s.Alg.FullBytes); err != nil {
		return nil, err
	}
	if k.SigAlgorithm, k.SigParamsAbsent, err = algID(alg.FullBytes); err != nil {
		return nil, err
	}
	var sig asn1.BitString
	if rest, err := asn1.Unmarshal(val.FullBytes, &sig); err != nil || len(rest) != 0 || sig.BitLength%8 != 0 {
		return nil, fmt.Errorf("csrtest: altSignatureValue: %v", err)
	}
	k.Signature = sig.Bytes
	return &k, nil
}

func algID(der []byte) (asn1.ObjectIdentifier, bool, error) {
	var seq asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &seq); err != nil || len(rest) != 0 || seq.Tag != asn1.TagSequence {
		return nil, false, fmt.Errorf("csrtest: AlgorithmIdentifier: %v", err)
	}
	var oid asn1.ObjectIdentifier
	rest, err := asn1.Unmarshal(seq.Bytes, &oid)
	if err != nil {
		return nil, false, fmt.Errorf("csrtest: AlgorithmIdentifier OID: %v", err)
	}
	return oid, len(rest) == 0, nil
}

// VerifyAlt checks the alternative signature of a hybrid CSR with circl:
// pure ML-DSA, empty context, over CRIWithoutAltSignature. It also insists
// on RFC 9881's form (parameters absent, raw key and signature sizes).
func VerifyAlt(der []byte) (*AltKey, error) {
	r, err := Parse(der)
	if err != nil {
		return nil, err
	}
	k, err := r.Alt()
	if err != nil {
		return nil, err
	}
	if !k.Algorithm.Equal(k.SigAlgorithm) || !k.ParamsAbsent || !k.SigParamsAbsent {
		return nil, fmt.Errorf("csrtest: alt key %s (params absent %v) signs as %s (params absent %v)",
			k.Algorithm, k.ParamsAbsent, k.SigAlgorithm, k.SigParamsAbsent)
	}
	sizes, ok := MLDSASizes[k.Algorithm.String()]
	if !ok || len(k.PublicKey) != sizes.Public || len(k.Signature) != sizes.Signature {
		return nil, fmt.Errorf("csrtest: alt key %s: %d-byte key, %d-byte signature", k.Algorithm, len(k.PublicKey), len(k.Signature))
	}
	msg, err := r.CRIWithoutAltSignature()
	if err != nil {
		return nil, err
	}
	if !verifyMLDSA(k.Algorithm, k.PublicKey, msg, k.Signature) {
		return nil, errors.New("csrtest: alternative signature does not verify over the CRI without 2.5.29.74")
	}
	return k, nil
}

func verifyMLDSA(oid asn1.ObjectIdentifier, pub, msg, sig []byte) bool {
	switch {
	case oid.Equal(OIDMLDSA44):
		var pk mldsa44.PublicKey
		return pk.UnmarshalBinary(pub) == nil && mldsa44.Verify(&pk, msg, nil, sig)
	case oid.Equal(OIDMLDSA65):
		var pk mldsa65.PublicKey
		return pk.UnmarshalBinary(pub) == nil && mldsa65.Verify(&pk, msg, nil, sig)
	case oid.Equal(OIDMLDSA87):
		var pk mldsa87.PublicKey
		return pk.UnmarshalBinary(pub) == nil && mldsa87.Verify(&pk, msg, nil, sig)
	}
	return false
}

// VerifyPrimary checks the primary signature over the CRI as encoded: with
// crypto/x509 for RSA, ECDSA and Ed25519, with circl for Ed448, which
// crypto/x509 does not know.
func VerifyPrimary(der []byte) error {
	r, err := Parse(der)
	if err != nil {
		return err
	}
	var s struct {
		Alg asn1.RawValue
		Key asn1.BitString
	}
	if _, err := asn1.Unmarshal(r.SPKI.FullBytes, &s); err != nil {
		return fmt.Errorf("csrtest: SPKI: %v", err)
	}
	keyAlg, _, err := algID(s.Alg.FullBytes)
	if err != nil {
		return err
	}
	sigAlg, absent, err := algID(r.SigAlg.FullBytes)
	if err != nil {
		return err
	}
	switch {
	case keyAlg.Equal(OIDEd448):
		if !sigAlg.Equal(OIDEd448) || !absent || len(s.Key.Bytes) != ed448.PublicKeySize {
			return fmt.Errorf("csrtest: Ed448 key signed as %s", sigAlg)
		}
		if !ed448.Verify(ed448.PublicKey(s.Key.Bytes), r.CRI, r.Signature, "") {
			return errors.New("csrtest: Ed448 signature does not verify")
		}
		return nil
	case keyAlg.Equal(OIDEd25519):
		if !sigAlg.Equal(OIDEd25519) || !absent || !ed25519.Verify(ed25519.PublicKey(s.Key.Bytes), r.CRI, r.Signature) {
			return errors.New("csrtest: Ed25519 signature does not verify")
		}
	}
	req, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return fmt.Errorf("csrtest: crypto/x509: %w", err)
	}
	return req.CheckSignature()
}

// OpenSSLVerify runs `openssl req -verify` on der and returns its output
// (with -text), or an error if openssl does not say "verify OK".
func OpenSSLVerify(dir string, der []byte) (string, error) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		return "", err
	}
	f := filepath.Join(dir, "req.der")
	if err := os.WriteFile(f, der, 0o600); err != nil {
		return "", err
	}
	out, err := exec.Command(bin, "req", "-inform", "DER", "-in", f, "-verify", "-noout", "-text").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "verify OK") {
		return string(out), fmt.Errorf("csrtest: openssl req -verify: %v\n%s", err, out)
	}
	return string(out), nil
}
