package csr

import (
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"io"
)

// oidExtensionRequest is PKCS#9 extensionRequest (RFC 2985 5.4.2).
var oidExtensionRequest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14}

// Attribute is one CertificationRequestInfo attribute: a type and its SET
// of values, each value a complete DER element (RawValue.FullBytes or
// Class/Tag/Bytes). It exists for the hybrid-certificate attributes
// (2.5.29.72/73/74) a later change adds.
type Attribute struct {
	Type   asn1.ObjectIdentifier
	Values []asn1.RawValue
}

// der encodes SEQUENCE { type, SET OF value } with the values DER-sorted.
func (a Attribute) der() ([]byte, error) {
	if len(a.Values) == 0 {
		return nil, fmt.Errorf("%w: attribute %s has no values", ErrInvalidRequest, a.Type)
	}
	vals := make([][]byte, 0, len(a.Values))
	for _, v := range a.Values {
		b, err := asn1.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%w: attribute %s: %v", ErrInvalidRequest, a.Type, err)
		}
		vals = append(vals, b)
	}
	set, err := derSetOf(vals)
	if err != nil {
		return nil, err
	}
	typ, err := asn1.Marshal(a.Type)
	if err != nil {
		return nil, fmt.Errorf("%w: attribute type: %v", ErrInvalidRequest, err)
	}
	return asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: append(typ, set...)})
}

// Request is what Build turns into a CSR.
type Request struct {
	Subject DN
	// SANs may be nil or empty: then no extensionRequest attribute is added.
	SANs *SANs
	// ExtraAttributes are added next to extensionRequest; their types must
	// be distinct and must not be extensionRequest.
	ExtraAttributes []Attribute
}

// Build assembles the CertificationRequestInfo (RFC 2986 4.1) with
// encoding/asn1 — version 0, the subject exactly as req.Subject orders it,
// the signer's SubjectPublicKeyInfo and the attributes as a DER-sorted
// [0] IMPLICIT SET — and signs it with signer (see SignCRI). It returns the
// DER CertificationRequest. The subjectAltName extension is critical when
// the subject is empty (RFC 5280 4.2.1.6); a request with neither subject
// nor SANs is ErrInvalidRequest.
func Build(rand io.Reader, req *Request, signer crypto.Signer) ([]byte, error) {
	if signer == nil {
		return nil, fmt.Errorf("%w: nil signer", ErrInvalidRequest)
	}
	cri, err := BuildCRI(req, signer.Public())
	if err != nil {
		return nil, err
	}
	return SignCRI(rand, cri, signer)
}

// BuildCRI returns the DER CertificationRequestInfo for req and pub without
// signing it, for callers that add signatures of their own (hybrid CSRs).
func BuildCRI(req *Request, pub crypto.PublicKey) ([]byte, error) {
	if req == nil {
		return nil, fmt.Errorf("%w: nil request", ErrInvalidRequest)
	}
	if len(req.Subject) == 0 && req.SANs.Empty() {
		return nil, fmt.Errorf("%w: neither subject nor SANs", ErrInvalidRequest)
	}
	subject, err := req.Subject.DER()
	if err != nil {
		return nil, err
	}
	spki, err := SPKI(pub)
	if err != nil {
		return nil, err
	}
	attrs, err := requestAttributes(req)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct {
		Version    int
		Subject    asn1.RawValue
		SPKI       asn1.RawValue
		Attributes asn1.RawValue
	}{0, asn1.RawValue{FullBytes: subject}, asn1.RawValue{FullBytes: spki}, asn1.RawValue{FullBytes: attrs}})
}

// requestAttributes encodes [0] IMPLICIT SET OF Attribute: extensionRequest
// (when there are SANs) plus ExtraAttributes, DER-sorted. With no attributes
// it is the empty [0] that RFC 2986 still requires.
func requestAttributes(req *Request) ([]byte, error) {
	attrs := make([]Attribute, 0, 1+len(req.ExtraAttributes))
	if !req.SANs.Empty() {
		ext, err := req.SANs.Extension()
		if err != nil {
			return nil, err
		}
		ext.Critical = len(req.Subject) == 0
		exts, err := asn1.Marshal([]pkix.Extension{ext})
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, Attribute{Type: oidExtensionRequest, Values: []asn1.RawValue{{FullBytes: exts}}})
	}
	for _, a := range req.ExtraAttributes {
		for _, prev := range attrs {
			if prev.Type.Equal(a.Type) {
				return nil, fmt.Errorf("%w: attribute %s given twice", ErrInvalidRequest, a.Type)
			}
		}
		attrs = append(attrs, a)
	}
	encoded := make([][]byte, 0, len(attrs))
	for _, a := range attrs {
		b, err := a.der()
		if err != nil {
			return nil, err
		}
		encoded = append(encoded, b)
	}
	set, err := derSetOf(encoded)
	if err != nil {
		return nil, err
	}
	// Re-tag the universal SET as [0] IMPLICIT (constructed, context 0).
	var rv asn1.RawValue
	if _, err := asn1.Unmarshal(set, &rv); err != nil {
		return nil, err
	}
	return asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: rv.Bytes})
}

// PEM wraps a DER CSR as "-----BEGIN CERTIFICATE REQUEST-----" PEM, the
// form Keyfactor returns in the "CSR" field.
func PEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}
