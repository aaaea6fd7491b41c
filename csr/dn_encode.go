package csr

import (
	"bytes"
	"encoding/asn1"
	"encoding/hex"
	"slices"
	"strings"
)

// DER returns the RDNSequence encoding of dn: RDNs in reverse string order
// (least specific first, RFC 4514 section 2.1), each RDN a SET whose
// elements are sorted by their DER encoding (X.690 11.6). An empty DN encodes
// as an empty SEQUENCE, which Build allows only with SANs.
func (dn DN) DER() ([]byte, error) {
	var seq []byte
	for i := len(dn) - 1; i >= 0; i-- {
		set, err := dn[i].der()
		if err != nil {
			return nil, err
		}
		seq = append(seq, set...)
	}
	return asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: seq})
}

// der encodes one RDN as a DER SET OF AttributeTypeAndValue.
func (rdn RDN) der() ([]byte, error) {
	if len(rdn) == 0 {
		return nil, &DNError{Pos: -1, Reason: "empty RDN"}
	}
	elems := make([][]byte, 0, len(rdn))
	for _, ava := range rdn {
		b, err := ava.der()
		if err != nil {
			return nil, err
		}
		elems = append(elems, b)
	}
	return derSetOf(elems)
}

// der encodes SEQUENCE { type OID, value }.
func (ava AttributeTypeAndValue) der() ([]byte, error) {
	val, err := encodeValue(ava)
	if err != nil {
		return nil, &DNError{Pos: -1, Attr: attrByOID(ava.Type).name, Reason: err.Error()}
	}
	b, err := asn1.Marshal(struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue
	}{ava.Type, asn1.RawValue{FullBytes: val}})
	if err != nil {
		return nil, &DNError{Pos: -1, Attr: ava.Type.String(), Reason: err.Error()}
	}
	return b, nil
}

// derSetOf wraps DER elements in a SET, sorted as DER requires for SET OF.
func derSetOf(elems [][]byte) ([]byte, error) {
	sorted := slices.Clone(elems)
	slices.SortFunc(sorted, bytes.Compare)
	return asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: bytes.Join(sorted, nil)})
}

// String returns dn in RFC 4514 form, in the order parsed, with the short
// names of the attribute table (OIDs for unknown types) and "#hex" for
// values given in hex, so that ParseDN(dn.String()) yields the same DER.
func (dn DN) String() string {
	var sb strings.Builder
	for i, rdn := range dn {
		if i > 0 {
			sb.WriteByte(',')
		}
		for j, ava := range rdn {
			if j > 0 {
				sb.WriteByte('+')
			}
			sb.WriteString(attrByOID(ava.Type).name)
			sb.WriteByte('=')
			if ava.Raw != nil {
				sb.WriteByte('#')
				sb.WriteString(strings.ToUpper(hex.EncodeToString(ava.Raw)))
			} else {
				sb.WriteString(escapeValue(ava.Value))
			}
		}
	}
	return sb.String()
}

// escapeValue applies RFC 4514 section 2.4 escaping; '=' is escaped too
// because Microsoft's parser (and so Keyfactor) treats it as special.
func escapeValue(v string) string {
	var sb strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case strings.IndexByte(`,+";<>\=`, c) >= 0,
			c == '#' && i == 0,
			c == ' ' && (i == 0 || i == len(v)-1):
			sb.WriteByte('\\')
			sb.WriteByte(c)
		case c == 0:
			sb.WriteString(`\00`)
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// Values returns the values of attr in string order. attr is a type name as
// ParseDN accepts it ("CN", "st", "E", ...) or a dotted OID; unknown names
// give nil.
func (dn DN) Values(attr string) []string {
	info, ok := lookupAttr(attr)
	if !ok {
		return nil
	}
	var out []string
	for _, rdn := range dn {
		for _, ava := range rdn {
			if ava.Type.Equal(info.oid) {
				out = append(out, ava.Value)
			}
		}
	}
	return out
}

// With returns a copy of dn with a single-valued RDN attr=value appended
// (least specific position), as policy defaults add e.g. O or C. value is the
// plain value, not RFC 4514 escaped; it is validated like a parsed value.
// dn itself is not modified.
func (dn DN) With(attr, value string) (DN, error) {
	info, ok := lookupAttr(attr)
	if !ok {
		return nil, &DNError{Pos: -1, Attr: attr, Reason: "unknown attribute type"}
	}
	ava := AttributeTypeAndValue{Type: info.oid, Value: value, Tag: info.tag}
	if reason := checkValue(info, ava); reason != "" {
		return nil, &DNError{Pos: -1, Attr: attr, Reason: reason}
	}
	out := make(DN, len(dn), len(dn)+1)
	copy(out, dn)
	return append(out, RDN{ava}), nil
}
