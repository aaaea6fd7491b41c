package csr

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"net"
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
	names, err := s.encodeNames()
	if err != nil {
		return pkix.Extension{}, err
	}
	value, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: names})
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: oidSubjectAltName, Value: value}, nil
}

// encodeNames returns the DER of every name as a GeneralName, in the
// order Strings lists them.
func (s *SANs) encodeNames() ([]byte, error) {
	var g nameDER
	if err := g.addStrings(gnDNSName, s.DNS); err != nil {
		return nil, err
	}
	if err := g.addIPs(s.IPs); err != nil {
		return nil, err
	}
	if err := g.addStrings(gnURI, s.URIs); err != nil {
		return nil, err
	}
	if err := g.addStrings(gnRFC822Name, s.Emails); err != nil {
		return nil, err
	}
	if err := g.addUPNs(s.UPNs); err != nil {
		return nil, err
	}
	if err := g.addRegisteredIDs(s.RegisteredIDs); err != nil {
		return nil, err
	}
	return g, nil
}

// nameDER accumulates the DER of GeneralName entries, each under its
// IMPLICIT context tag.
type nameDER []byte

func (g *nameDER) add(tag int, compound bool, content []byte) error {
	b, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, IsCompound: compound, Bytes: content})
	if err != nil {
		return err
	}
	*g = append(*g, b...)
	return nil
}

// addStrings adds IA5String names (dNSName, uniformResourceIdentifier,
// rfc822Name), already checked to be ASCII.
func (g *nameDER) addStrings(tag int, vs []string) error {
	for _, v := range vs {
		if err := g.add(tag, false, []byte(v)); err != nil {
			return err
		}
	}
	return nil
}

// addIPs adds iPAddress names: 4 bytes for IPv4, 16 for IPv6.
func (g *nameDER) addIPs(ips []net.IP) error {
	for _, ip := range ips {
		b := ip.To4()
		if b == nil {
			b = ip.To16()
		}
		if b == nil {
			return &SANError{Key: "ip", Value: fmt.Sprint(ip), Reason: "IP address must be 4 or 16 bytes"}
		}
		if err := g.add(gnIPAddress, false, b); err != nil {
			return err
		}
	}
	return nil
}

// addUPNs adds Microsoft UPNs as otherName entries.
func (g *nameDER) addUPNs(upns []string) error {
	for _, v := range upns {
		on, err := otherNameUTF8(oidUPN, v)
		if err != nil {
			return err
		}
		if err := g.add(gnOtherName, true, on); err != nil {
			return err
		}
	}
	return nil
}

// addRegisteredIDs adds registeredID names: the OID's content octets under
// the IMPLICIT tag.
func (g *nameDER) addRegisteredIDs(oids []asn1.ObjectIdentifier) error {
	for _, oid := range oids {
		content, err := oidContent(oid)
		if err != nil {
			return &SANError{Key: "registeredid", Value: oid.String(), Reason: err.Error()}
		}
		if err := g.add(gnRegisteredID, false, content); err != nil {
			return err
		}
	}
	return nil
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
