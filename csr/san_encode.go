package csr

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
)

var (
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	// oidUPN is Microsoft's szOID_NT_PRINCIPAL_NAME.
	oidUPN = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}
)

// GeneralName context tags (RFC 5280 4.2.1.6), all IMPLICIT.
const (
	gnOtherName    = 0
	gnRFC822Name   = 1
	gnDNSName      = 2
	gnURI          = 6
	gnIPAddress    = 7
	gnRegisteredID = 8
)

// Strings lists the names as "DNS:x", "IP:1.2.3.4", "URI:..", "email:..",
// "UPN:..", "RID:1.2.3" (OpenSSL-like), in Extension order, for records and
// listings.
func (s *SANs) Strings() []string {
	if s == nil {
		return nil
	}
	out := make([]string, 0, s.Count())
	for _, v := range s.DNS {
		out = append(out, "DNS:"+v)
	}
	for _, v := range s.IPs {
		out = append(out, "IP:"+v.String())
	}
	for _, v := range s.URIs {
		out = append(out, "URI:"+v)
	}
	for _, v := range s.Emails {
		out = append(out, "email:"+v)
	}
	for _, v := range s.UPNs {
		out = append(out, "UPN:"+v)
	}
	for _, v := range s.RegisteredIDs {
		out = append(out, "RID:"+v.String())
	}
	return out
}

// Extension returns the subjectAltName extension (non-critical; Build marks
// it critical when the subject is empty, RFC 5280 4.2.1.6). GeneralNames is
// built by hand because crypto/x509 cannot emit otherName or registeredID.
// Empty SANs are an error: GeneralNames is SIZE (1..MAX).
func (s *SANs) Extension() (pkix.Extension, error) {
	if s.Empty() {
		return pkix.Extension{}, &SANError{Key: "*", Reason: "no names for a subjectAltName extension", keyOnly: true}
	}
	var names []byte
	add := func(class, tag int, compound bool, content []byte) error {
		b, err := asn1.Marshal(asn1.RawValue{Class: class, Tag: tag, IsCompound: compound, Bytes: content})
		if err != nil {
			return err
		}
		names = append(names, b...)
		return nil
	}
	ctx := asn1.ClassContextSpecific
	for _, v := range s.DNS {
		if err := add(ctx, gnDNSName, false, []byte(v)); err != nil {
			return pkix.Extension{}, err
		}
	}
	for _, ip := range s.IPs {
		b := ip.To4()
		if b == nil {
			b = ip.To16()
		}
		if b == nil {
			return pkix.Extension{}, &SANError{Key: "ip", Value: fmt.Sprint(ip), Reason: "IP address must be 4 or 16 bytes"}
		}
		if err := add(ctx, gnIPAddress, false, b); err != nil {
			return pkix.Extension{}, err
		}
	}
	for _, v := range s.URIs {
		if err := add(ctx, gnURI, false, []byte(v)); err != nil {
			return pkix.Extension{}, err
		}
	}
	for _, v := range s.Emails {
		if err := add(ctx, gnRFC822Name, false, []byte(v)); err != nil {
			return pkix.Extension{}, err
		}
	}
	for _, v := range s.UPNs {
		on, err := otherNameUTF8(oidUPN, v)
		if err != nil {
			return pkix.Extension{}, err
		}
		if err := add(ctx, gnOtherName, true, on); err != nil {
			return pkix.Extension{}, err
		}
	}
	for _, oid := range s.RegisteredIDs {
		content, err := oidContent(oid)
		if err != nil {
			return pkix.Extension{}, &SANError{Key: "registeredid", Value: oid.String(), Reason: err.Error()}
		}
		if err := add(ctx, gnRegisteredID, false, content); err != nil {
			return pkix.Extension{}, err
		}
	}
	value, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: names})
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: oidSubjectAltName, Value: value}, nil
}

// otherNameUTF8 returns the contents of an otherName:
// type-id OID followed by [0] EXPLICIT UTF8String.
func otherNameUTF8(typ asn1.ObjectIdentifier, v string) ([]byte, error) {
	id, err := asn1.Marshal(typ)
	if err != nil {
		return nil, err
	}
	str, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagUTF8String, Bytes: []byte(v)})
	if err != nil {
		return nil, err
	}
	val, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: str})
	if err != nil {
		return nil, err
	}
	return append(id, val...), nil
}

// oidContent returns the content octets of an OID's DER (for IMPLICIT tags).
func oidContent(oid asn1.ObjectIdentifier) ([]byte, error) {
	b, err := asn1.Marshal(oid)
	if err != nil {
		return nil, err
	}
	var rv asn1.RawValue
	if _, err := asn1.Unmarshal(b, &rv); err != nil {
		return nil, err
	}
	return rv.Bytes, nil
}
