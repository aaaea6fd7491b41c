package csr

import (
	"encoding/asn1"
	"strconv"
	"strings"
)

// attrInfo is what csr knows about one attribute type: the name String()
// emits, the ASN.1 string type RFC 5280 prescribes, and the upper bound
// (in characters) from RFC 5280 Appendix A / X.520; 0 means unbounded.
type attrInfo struct {
	name  string
	oid   asn1.ObjectIdentifier
	tag   int  // string type used for values parsed from text
	fixed bool // tag is mandated: a #hex value must use exactly this type
	ub    int
}

// Upper bounds, RFC 5280 Appendix A (ub-*) and X.520 where 5280 is silent.
const (
	ubName               = 32768 // ub-name: givenName, surname, initials, generationQualifier
	ubCommonName         = 64
	ubLocalityName       = 128
	ubStateName          = 128
	ubOrganizationName   = 64
	ubOrganizationalUnit = 64
	ubTitle              = 64
	ubSerialNumber       = 64
	ubEmailAddress       = 255 // ub-emailaddress-length (255 since RFC 5280 erratum 5076 / RFC 3280 128)
	ubPseudonym          = 128
	ubPostalCode         = 40  // X.520 ub-postal-code
	ubStreetAddress      = 128 // X.520 ub-street-address
)

var (
	oidCN                  = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidSurname             = asn1.ObjectIdentifier{2, 5, 4, 4}
	oidSerialNumber        = asn1.ObjectIdentifier{2, 5, 4, 5}
	oidCountry             = asn1.ObjectIdentifier{2, 5, 4, 6}
	oidLocality            = asn1.ObjectIdentifier{2, 5, 4, 7}
	oidState               = asn1.ObjectIdentifier{2, 5, 4, 8}
	oidStreet              = asn1.ObjectIdentifier{2, 5, 4, 9}
	oidOrganization        = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidOrganizationalUnit  = asn1.ObjectIdentifier{2, 5, 4, 11}
	oidTitle               = asn1.ObjectIdentifier{2, 5, 4, 12}
	oidPostalCode          = asn1.ObjectIdentifier{2, 5, 4, 17}
	oidGivenName           = asn1.ObjectIdentifier{2, 5, 4, 42}
	oidInitials            = asn1.ObjectIdentifier{2, 5, 4, 43}
	oidGenerationQualifier = asn1.ObjectIdentifier{2, 5, 4, 44}
	oidDNQualifier         = asn1.ObjectIdentifier{2, 5, 4, 46}
	oidPseudonym           = asn1.ObjectIdentifier{2, 5, 4, 65}
	oidDomainComponent     = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
	oidUID                 = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}
	oidEmailAddress        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
)

// knownAttrs lists the attribute types accepted by name. The first entry for
// an OID carries the name String() emits. Names follow what Keyfactor
// (Microsoft CertStrToName) and OpenSSL accept; SN is surname in both.
var knownAttrs = []attrInfo{
	{"CN", oidCN, asn1.TagUTF8String, false, ubCommonName},
	{"SN", oidSurname, asn1.TagUTF8String, false, ubName},
	{"SERIALNUMBER", oidSerialNumber, asn1.TagPrintableString, true, ubSerialNumber},
	{"C", oidCountry, asn1.TagPrintableString, true, 2},
	{"L", oidLocality, asn1.TagUTF8String, false, ubLocalityName},
	{"ST", oidState, asn1.TagUTF8String, false, ubStateName},
	{"STREET", oidStreet, asn1.TagUTF8String, false, ubStreetAddress},
	{"O", oidOrganization, asn1.TagUTF8String, false, ubOrganizationName},
	{"OU", oidOrganizationalUnit, asn1.TagUTF8String, false, ubOrganizationalUnit},
	{"T", oidTitle, asn1.TagUTF8String, false, ubTitle},
	{"POSTALCODE", oidPostalCode, asn1.TagUTF8String, false, ubPostalCode},
	{"GIVENNAME", oidGivenName, asn1.TagUTF8String, false, ubName},
	{"INITIALS", oidInitials, asn1.TagUTF8String, false, ubName},
	{"GENERATIONQUALIFIER", oidGenerationQualifier, asn1.TagUTF8String, false, ubName},
	{"DNQUALIFIER", oidDNQualifier, asn1.TagPrintableString, true, 0},
	{"PSEUDONYM", oidPseudonym, asn1.TagUTF8String, false, ubPseudonym},
	{"DC", oidDomainComponent, asn1.TagIA5String, true, 0},
	{"UID", oidUID, asn1.TagUTF8String, false, 0},
	{"E", oidEmailAddress, asn1.TagIA5String, true, ubEmailAddress},
}

// attrAliases maps further accepted (upper-case) names to canonical names.
var attrAliases = map[string]string{
	"S":            "ST",
	"TITLE":        "T",
	"G":            "GIVENNAME",
	"I":            "INITIALS",
	"SURNAME":      "SN",
	"EMAILADDRESS": "E",
	"EMAIL":        "E",
	"COMMONNAME":   "CN",
}

// lookupAttr resolves a type as written: a name (case-insensitive), an alias,
// or a dotted OID optionally prefixed "OID." (Microsoft style). An unknown
// but well-formed OID yields a generic UTF8String attribute with no bound.
// ok is false for unknown names and malformed OIDs.
func lookupAttr(typ string) (attrInfo, bool) {
	up := strings.ToUpper(typ)
	if a, ok := attrAliases[up]; ok {
		up = a
	}
	for _, a := range knownAttrs {
		if a.name == up {
			return a, true
		}
	}
	s := typ
	if len(up) > 4 && up[:4] == "OID." {
		s = typ[4:]
	}
	oid, ok := parseOID(s)
	if !ok {
		return attrInfo{}, false
	}
	return attrByOID(oid), true
}

// attrByOID returns the table entry for oid, or a generic entry.
func attrByOID(oid asn1.ObjectIdentifier) attrInfo {
	for _, a := range knownAttrs {
		if a.oid.Equal(oid) {
			return a
		}
	}
	return attrInfo{name: oid.String(), oid: oid, tag: asn1.TagUTF8String}
}

// parseOID parses a dotted OID strictly: at least two arcs, first arc 0-2,
// second arc < 40 under 0 and 1, decimal arcs without leading zeros that fit
// an int (asn1.ObjectIdentifier is []int).
func parseOID(s string) (asn1.ObjectIdentifier, bool) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, false
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		if p == "" || (len(p) > 1 && p[0] == '0') {
			return nil, false
		}
		for j := 0; j < len(p); j++ {
			if p[j] < '0' || p[j] > '9' {
				return nil, false
			}
		}
		n, err := strconv.Atoi(p)
		if err != nil || n > 1<<31-1 {
			return nil, false
		}
		oid[i] = n
	}
	if oid[0] > 2 || (oid[0] < 2 && oid[1] >= 40) {
		return nil, false
	}
	return oid, true
}
