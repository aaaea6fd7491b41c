package csr

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// dnsProfile converts IDNs to A-labels strictly (UTS #46 non-transitional
// mapping, IDNA2008 bidi and joiner rules, STD3 LDH, DNS lengths). It is
// read-only configuration, not mutable state.
var dnsProfile = idna.New(
	idna.MapForLookup(),
	idna.Transitional(false),
	idna.BidiRule(),
	idna.ValidateLabels(true),
	idna.CheckHyphens(true),
	idna.CheckJoiners(true),
	idna.StrictDomainName(true),
	idna.VerifyDNSLength(true),
)

// normalizeDNS validates a DNS name and returns it as lower-case A-labels.
// With allowWildcard, "*" may be the whole leftmost label (RFC 6125 6.4.3
// as CAs apply it); it is never allowed anywhere else.
func normalizeDNS(v string, allowWildcard bool) (string, string) {
	prefix, rest, reason := splitDNS(v, allowWildcard)
	if reason != "" {
		return "", reason
	}
	if isASCII(rest) {
		// Check plain names first so the reason is specific ("label longer
		// than 63 characters") rather than the IDNA library's generic one.
		if reason := checkLDH(strings.ToLower(rest)); reason != "" {
			return "", reason
		}
		if len(prefix)+len(rest) > 253 {
			return "", "name longer than 253 characters"
		}
	}
	a, err := dnsProfile.ToASCII(rest)
	if err != nil {
		return "", "not a valid domain name (IDNA: " + strings.TrimPrefix(err.Error(), "idna: ") + ")"
	}
	a = strings.ToLower(a)
	if reason := checkLDH(a); reason != "" {
		return "", reason
	}
	if len(prefix)+len(a) > 253 {
		return "", "name longer than 253 characters"
	}
	return prefix + a, ""
}

// splitDNS separates an allowed wildcard label ("*.") from the rest of the
// name and refuses what is not a name at all: spaces, a trailing dot, '*'
// elsewhere, an IP address, empty labels.
func splitDNS(v string, allowWildcard bool) (prefix, rest, reason string) {
	if hasSpaceOrControl(v) {
		return "", "", "contains whitespace or control characters"
	}
	if strings.HasSuffix(v, ".") {
		return "", "", "trailing dot"
	}
	rest = v
	if allowWildcard && strings.HasPrefix(v, "*.") {
		prefix, rest = "*.", v[2:]
	}
	switch {
	case strings.Contains(rest, "*") && allowWildcard:
		return "", "", "wildcard '*' is only allowed as the whole leftmost label"
	case strings.Contains(rest, "*"):
		return "", "", "'*' not allowed"
	case rest == "":
		return "", "", "empty name"
	case net.ParseIP(rest) != nil:
		return "", "", "IP address in a DNS name; use the ip4/ip6/ip key"
	case slices.Contains(strings.Split(rest, "."), ""):
		return "", "", "empty label"
	}
	return prefix, rest, ""
}

// hasSpaceOrControl reports whether v holds a space or control character,
// which no name csrd emits may carry.
func hasSpaceOrControl(v string) bool {
	return strings.ContainsFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) })
}

// checkLDH enforces the preferred name syntax (RFC 1034 3.5 as relaxed by
// RFC 1123) on an A-label name; the IDNA profile already did most of this,
// this keeps the guarantee independent of the library's options.
func checkLDH(name string) string {
	for _, l := range strings.Split(name, ".") {
		switch {
		case l == "":
			return "empty label"
		case len(l) > 63:
			return "label longer than 63 characters"
		case l[0] == '-' || l[len(l)-1] == '-':
			return "label starts or ends with '-'"
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !isLDH(c) {
				return fmt.Sprintf("character %q not allowed (letters, digits and '-' only)", c)
			}
		}
	}
	return ""
}

// isLDH reports whether c is a lower-case letter, a digit or '-'.
func isLDH(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// parseSANIP parses an IP literal for the ip4, ip6 or ip key. IPv4-mapped
// IPv6 addresses are refused: they are ambiguous in an iPAddress SAN.
func parseSANIP(kind sanKind, v string) (net.IP, string) {
	a, err := netip.ParseAddr(v)
	if err != nil {
		return nil, "not an IP address"
	}
	if a.Zone() != "" {
		return nil, "IPv6 zone not allowed"
	}
	if a.Is4In6() {
		return nil, "IPv4-mapped IPv6 address; use the plain IPv4 form"
	}
	switch {
	case kind == kindIP4 && !a.Is4():
		return nil, "not an IPv4 address"
	case kind == kindIP6 && !a.Is6():
		return nil, "not an IPv6 address"
	}
	return net.IP(a.AsSlice()), ""
}

// normalizeURI checks RFC 5280 4.2.1.6: an absolute URI (scheme and
// scheme-specific part), ASCII only (IA5String), and a non-empty host when
// it has an authority. The scheme is lower-cased (RFC 3986 3.1).
func normalizeURI(v string) (string, string) {
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] >= 0x7f {
			return "", "URI must be ASCII without spaces or control characters (percent-encode them)"
		}
	}
	u, err := url.Parse(v)
	if err != nil {
		return "", "malformed URI"
	}
	if u.Scheme == "" {
		return "", "relative URI; a scheme is required"
	}
	rest := v[len(u.Scheme)+1:]
	switch {
	case strings.HasPrefix(rest, "//"):
		host := u.Hostname()
		if host == "" {
			return "", "URI authority without a host"
		}
		if _, err := netip.ParseAddr(host); err != nil {
			if _, reason := normalizeDNS(host, false); reason != "" {
				return "", "URI host: " + reason
			}
		}
	case rest == "":
		return "", "URI without a scheme-specific part"
	}
	return strings.ToLower(u.Scheme) + ":" + rest, ""
}

// normalizeEmail checks an rfc822Name: a dot-atom ASCII local part and a
// domain, the domain converted to lower-case A-labels. Non-ASCII local parts
// would need SmtpUTF8Mailbox (RFC 8398), which csrd does not emit.
func normalizeEmail(v string) (string, string) {
	i := strings.LastIndexByte(v, '@')
	if i <= 0 || i == len(v)-1 {
		return "", "must be local-part@domain"
	}
	local, domain := v[:i], v[i+1:]
	if len(local) > 64 {
		return "", "local part longer than 64 characters"
	}
	if strings.HasPrefix(local, ".") || strings.HasSuffix(local, ".") || strings.Contains(local, "..") {
		return "", "local part has a misplaced '.'"
	}
	for _, r := range local {
		if r >= utf8.RuneSelf {
			return "", "non-ASCII local part cannot be an rfc822Name"
		}
		if !isAtext(byte(r)) && r != '.' {
			return "", "character " + string(r) + " not allowed in local part"
		}
	}
	d, reason := normalizeDNS(domain, false)
	if reason != "" {
		return "", "domain: " + reason
	}
	return local + "@" + d, ""
}

// isAtext reports RFC 5322 atext.
func isAtext(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// checkUPN accepts user@suffix in UTF-8; the suffix is an AD UPN suffix, not
// necessarily a DNS name, so only the shape is checked.
func checkUPN(v string) string {
	if !utf8.ValidString(v) {
		return "invalid UTF-8"
	}
	if hasSpaceOrControl(v) {
		return "contains whitespace or control characters"
	}
	i := strings.LastIndexByte(v, '@')
	if i <= 0 || i == len(v)-1 {
		return "must be user@suffix"
	}
	return ""
}
