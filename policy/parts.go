package policy

import (
	"encoding/asn1"
	"strings"

	"github.com/csrd/csrd/csr"
)

// part is what a Regex or Default applies to: one subject attribute type or
// one SAN type.
type part struct {
	// name is the canonical spelling shown to people: "CN", "O", "dns".
	name string
	// key identifies the part for overriding: a pattern's regex for a part
	// replaces the system-wide one for the same key.
	key string
	// oid is set for subject attributes.
	oid asn1.ObjectIdentifier
	// san is set for SAN types.
	san sanPart
}

type sanPart int

const (
	sanNone sanPart = iota
	sanDNS
	sanIP4
	sanIP6
	sanIP
	sanURI
	sanEmail
	sanUPN
	sanRID
)

// sanParts are the SAN types a Regex may name: Keyfactor's SAN keys (as a
// Generate request sends them) and csrd's aliases. "email" is not among
// them: as a SubjectPart it is the subject's E attribute.
var sanParts = map[string]struct {
	kind sanPart
	name string
}{
	"dns":                {sanDNS, "dns"},
	"ip4":                {sanIP4, "ip4"},
	"ip6":                {sanIP6, "ip6"},
	"ip":                 {sanIP, "ip"},
	"uri":                {sanURI, "uri"},
	"rfc822":             {sanEmail, "rfc822"},
	"ms_ntprincipalname": {sanUPN, "ms_ntprincipalname"},
	"upn":                {sanUPN, "ms_ntprincipalname"},
	"registeredid":       {sanRID, "registeredid"},
}

// lookupPart resolves a SubjectPart; SAN types first, then anything
// csr.ParseDN accepts as an attribute type.
func lookupPart(s string) (part, bool) {
	s = strings.TrimSpace(s)
	if sp, ok := sanParts[strings.ToLower(s)]; ok {
		return part{name: sp.name, key: "san:" + sp.name, san: sp.kind}, true
	}
	oid, name, ok := csr.AttributeOID(s)
	if !ok {
		return part{}, false
	}
	return part{name: name, key: "attr:" + oid.String(), oid: oid}, true
}

// field is how a violation names the part: "Subject.CN", "SANs.dns".
func (p part) field() string {
	if p.san != sanNone {
		return "SANs." + p.name
	}
	return "Subject." + p.name
}

// values returns the request's values of the part, normalised as the CSR
// will carry them.
func (p part) values(subject csr.DN, sans *csr.SANs) []string {
	if p.san == sanNone {
		var out []string
		for _, rdn := range subject {
			for _, ava := range rdn {
				if ava.Type.Equal(p.oid) {
					out = append(out, ava.Value)
				}
			}
		}
		return out
	}
	if sans == nil {
		return nil
	}
	var out []string
	switch p.san {
	case sanDNS:
		out = sans.DNS
	case sanIP4, sanIP6, sanIP:
		for _, ip := range sans.IPs {
			v4 := ip.To4() != nil
			if p.san == sanIP || (p.san == sanIP4) == v4 {
				out = append(out, ip.String())
			}
		}
	case sanURI:
		out = sans.URIs
	case sanEmail:
		out = sans.Emails
	case sanUPN:
		out = sans.UPNs
	case sanRID:
		for _, r := range sans.RegisteredIDs {
			out = append(out, r.String())
		}
	}
	return out
}
