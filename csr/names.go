package csr

import (
	"encoding/asn1"
	"strings"
)

// AttributeOID resolves a subject attribute type as ParseDN accepts it (a
// name such as "CN", "st", "E", an alias, or a dotted OID) to its OID and
// canonical name. The policy engine uses it to attach regexes and defaults
// to attributes; ok is false for names ParseDN would refuse.
func AttributeOID(typ string) (oid asn1.ObjectIdentifier, name string, ok bool) {
	info, ok := lookupAttr(strings.TrimSpace(typ))
	if !ok {
		return nil, "", false
	}
	return info.oid, info.name, true
}

// AttributeName is the short name String() writes for oid (the dotted OID
// for types csr has no name for).
func AttributeName(oid asn1.ObjectIdentifier) string { return attrByOID(oid).name }

// HostName reports whether s is a DNS host name — at least two labels, in
// the syntax a dNSName SAN accepts, a wildcard leftmost label included — and
// returns it normalised exactly as ParseSANs normalises a dns value (lower
// case A-labels), so that a CN can be compared with the DNS SANs.
func HostName(s string) (string, bool) {
	if !strings.Contains(s, ".") {
		return "", false
	}
	n, reason := normalizeDNS(s, true)
	if reason != "" {
		return "", false
	}
	return n, true
}
