package csr

import (
	"encoding/asn1"
	"net"
	"slices"
	"strings"
	"unicode/utf8"
)

// Limits on SAN input, so one request cannot make the daemon build a
// megabyte extension.
const (
	MaxSANValues   = 1000 // values over all keys, counted before de-duplication
	MaxSANValueLen = 1024 // bytes per value
)

// SANs are validated, normalised subject alternative names. Within a type
// the caller's order is kept (duplicates dropped); Extension emits the types
// in the order of the fields.
type SANs struct {
	DNS           []string // A-labels, lower case; "*." only as the whole leftmost label
	IPs           []net.IP // 4 bytes for IPv4, 16 for IPv6
	URIs          []string
	Emails        []string // rfc822Name, domain as A-labels
	UPNs          []string // otherName 1.3.6.1.4.1.311.20.2.3
	RegisteredIDs []asn1.ObjectIdentifier
}

// sanKind is the internal SAN type a request key maps to.
type sanKind int

const (
	kindDNS sanKind = iota
	kindIP4
	kindIP6
	kindIP
	kindURI
	kindEmail
	kindUPN
	kindRID
)

// sanKeys maps lower-case Keyfactor SAN keys (and csrd's aliases) to kinds.
var sanKeys = map[string]sanKind{
	"dns":                kindDNS,
	"ip4":                kindIP4,
	"ip6":                kindIP6,
	"ip":                 kindIP,
	"uri":                kindURI,
	"rfc822":             kindEmail,
	"email":              kindEmail,
	"ms_ntprincipalname": kindUPN,
	"upn":                kindUPN,
	"registeredid":       kindRID,
}

// unsupportedSANKeys are Keyfactor keys csrd knows but does not implement;
// they get a more helpful reason than an unknown key.
var unsupportedSANKeys = []string{"other", "directory", "x400", "ediparty", "ms_ntdsreplication"}

// ParseSANs validates the Keyfactor "SANs" object (key -> values). Keys are
// case-insensitive; they are processed in sorted order so errors and the
// order of values from aliased keys are deterministic. A nil or empty map
// gives empty SANs. Every error is a *SANError.
func ParseSANs(m map[string][]string) (*SANs, error) {
	keys := make([]string, 0, len(m))
	total := 0
	for k, vs := range m {
		keys = append(keys, k)
		total += len(vs)
	}
	slices.Sort(keys)
	if total > MaxSANValues {
		return nil, &SANError{Key: "*", Reason: "too many SAN values (at most 1000)", keyOnly: true}
	}
	s := &SANs{}
	seen := make(map[string]bool)
	for _, k := range keys {
		kind, ok := sanKeys[strings.ToLower(k)]
		if !ok {
			reason := "unknown SAN type"
			if slices.Contains(unsupportedSANKeys, strings.ToLower(k)) {
				reason = "SAN type not supported by csrd"
			}
			return nil, &SANError{Key: k, Reason: reason, keyOnly: true}
		}
		for _, v := range m[k] {
			if err := s.add(kind, k, v, seen); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// add validates one value and appends its normalised form unless seen.
func (s *SANs) add(kind sanKind, key, v string, seen map[string]bool) error {
	fail := func(reason string) error { return &SANError{Key: key, Value: v, Reason: reason} }
	if v == "" {
		return fail("empty value")
	}
	if len(v) > MaxSANValueLen {
		return fail("value longer than 1024 bytes")
	}
	if !utf8.ValidString(v) {
		return fail("invalid UTF-8")
	}
	var dedup string
	var push func()
	switch kind {
	case kindDNS:
		n, reason := normalizeDNS(v, true)
		if reason != "" {
			return fail(reason)
		}
		dedup, push = "dns:"+n, func() { s.DNS = append(s.DNS, n) }
	case kindIP4, kindIP6, kindIP:
		ip, reason := parseSANIP(kind, v)
		if reason != "" {
			return fail(reason)
		}
		dedup, push = "ip:"+string(ip), func() { s.IPs = append(s.IPs, ip) }
	case kindURI:
		u, reason := normalizeURI(v)
		if reason != "" {
			return fail(reason)
		}
		dedup, push = "uri:"+u, func() { s.URIs = append(s.URIs, u) }
	case kindEmail:
		e, reason := normalizeEmail(v)
		if reason != "" {
			return fail(reason)
		}
		dedup, push = "email:"+e, func() { s.Emails = append(s.Emails, e) }
	case kindUPN:
		if reason := checkUPN(v); reason != "" {
			return fail(reason)
		}
		dedup, push = "upn:"+v, func() { s.UPNs = append(s.UPNs, v) }
	case kindRID:
		oid, ok := parseOID(v)
		if !ok {
			return fail("not a dotted OID")
		}
		dedup, push = "rid:"+oid.String(), func() { s.RegisteredIDs = append(s.RegisteredIDs, oid) }
	}
	if !seen[dedup] {
		seen[dedup] = true
		push()
	}
	return nil
}

// Count returns the number of names; nil SANs have none.
func (s *SANs) Count() int {
	if s == nil {
		return 0
	}
	return len(s.DNS) + len(s.IPs) + len(s.URIs) + len(s.Emails) + len(s.UPNs) + len(s.RegisteredIDs)
}

// Empty reports whether there is no name at all (nil included).
func (s *SANs) Empty() bool { return s.Count() == 0 }
