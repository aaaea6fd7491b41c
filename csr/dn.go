package csr

import (
	"encoding/asn1"
	"strings"
	"unicode/utf8"
)

// AttributeTypeAndValue is one attribute of a subject DN.
type AttributeTypeAndValue struct {
	Type asn1.ObjectIdentifier
	// Value is the decoded value; for "#hex" values the decoded string.
	Value string
	// Tag is the ASN.1 string type: asn1.TagUTF8String, TagPrintableString,
	// TagIA5String, TagBMPString or TagT61String. 0 means "the default for
	// Type" when encoding.
	Tag int
	// Raw is, for "#hex" values, the exact DER of the value, emitted
	// unchanged; nil otherwise.
	Raw []byte
}

// RDN is a relative distinguished name: one or more attributes
// ("CN=a+UID=b"), in the order written.
type RDN []AttributeTypeAndValue

// DN is a distinguished name with its RDNs in string order, most specific
// first, as RFC 4514 writes it. DER reverses the order.
type DN []RDN

// MaxDNLength bounds the subject string ParseDN accepts, in bytes; far
// above any real subject, it keeps parsing cost bounded.
const MaxDNLength = 65536

// ParseDN parses an X.500 subject as Keyfactor users write it: RFC 4514
// escapes (\, \+ \" \\ \; \< \> \= \# \space and \XX hex pairs), double-quoted
// values, spaces around separators ignored, ',' or ';' between RDNs, '+'
// inside multi-valued RDNs, case-insensitive type names or dotted OIDs
// (optionally "OID." prefixed) and "#hex" BER values. Every error is a
// *DNError with the byte offset of the problem.
func ParseDN(s string) (DN, error) {
	if !utf8.ValidString(s) {
		return nil, &DNError{Pos: firstInvalidUTF8(s), Reason: "invalid UTF-8"}
	}
	if strings.TrimLeft(s, " ") == "" {
		return nil, &DNError{Pos: 0, Reason: "empty subject"}
	}
	if len(s) > MaxDNLength {
		return nil, &DNError{Pos: MaxDNLength, Reason: "subject longer than 65536 bytes"}
	}
	p := &dnParser{s: s}
	var dn DN
	var rdn RDN
	inRDN := make(map[string]bool) // AVAs of the current RDN, to refuse duplicates
	for {
		ava, err := p.parseAVA()
		if err != nil {
			return nil, err
		}
		key := ava.Type.String() + "\x00" + ava.Value + "\x00" + string(ava.Raw)
		if inRDN[key] {
			return nil, &DNError{Pos: p.avaPos, Attr: p.avaAttr, Reason: "duplicate attribute value in multi-valued RDN"}
		}
		inRDN[key] = true
		rdn = append(rdn, ava)
		if p.pos == len(s) {
			return append(dn, rdn), nil
		}
		sep := s[p.pos]
		p.pos++
		if sep != '+' {
			dn = append(dn, rdn)
			rdn = nil
			clear(inRDN)
		}
		if strings.TrimLeft(s[p.pos:], " ") == "" {
			return nil, &DNError{Pos: p.pos - 1, Reason: "trailing '" + string(sep) + "' without attribute"}
		}
	}
}

// dnParser holds the cursor of ParseDN; avaPos/avaAttr remember the
// attribute being parsed so later checks can report it.
type dnParser struct {
	s       string
	pos     int
	avaPos  int
	avaAttr string
}

func (p *dnParser) skipSpaces() {
	for p.pos < len(p.s) && p.s[p.pos] == ' ' {
		p.pos++
	}
}

func isSeparator(c byte) bool { return c == ',' || c == ';' || c == '+' }

// parseAVA parses "type = value" and leaves pos at the separator or the end.
func (p *dnParser) parseAVA() (AttributeTypeAndValue, error) {
	p.skipSpaces()
	start := p.pos
	for p.pos < len(p.s) && p.s[p.pos] != '=' && !isSeparator(p.s[p.pos]) {
		p.pos++
	}
	typ := strings.TrimRight(p.s[start:p.pos], " ")
	p.avaPos, p.avaAttr = start, typ
	if p.pos == len(p.s) || p.s[p.pos] != '=' {
		if typ == "" {
			return AttributeTypeAndValue{}, &DNError{Pos: start, Reason: "empty RDN"}
		}
		return AttributeTypeAndValue{}, &DNError{Pos: start, Attr: typ, Reason: "missing '='"}
	}
	if typ == "" {
		return AttributeTypeAndValue{}, &DNError{Pos: start, Reason: "missing attribute type before '='"}
	}
	info, ok := lookupAttr(typ)
	if !ok {
		return AttributeTypeAndValue{}, &DNError{Pos: start, Attr: typ, Reason: "unknown attribute type"}
	}
	p.pos++ // '='
	p.skipSpaces()
	valPos := p.pos
	p.avaPos = valPos
	var ava AttributeTypeAndValue
	var err error
	switch {
	case p.pos < len(p.s) && p.s[p.pos] == '"':
		ava, err = p.parseQuoted(info, typ)
	case p.pos < len(p.s) && p.s[p.pos] == '#':
		ava, err = p.parseHex(info, typ)
	default:
		ava, err = p.parseString(info, typ)
	}
	if err != nil {
		return ava, err
	}
	if reason := checkValue(info, ava); reason != "" {
		return ava, &DNError{Pos: valPos, Attr: typ, Reason: reason}
	}
	return ava, nil
}

// parseString parses an unquoted value up to the next unescaped separator,
// dropping unescaped trailing spaces (RFC 4514 requires a significant
// trailing space to be escaped).
func (p *dnParser) parseString(info attrInfo, typ string) (AttributeTypeAndValue, error) {
	var b []byte
	keep := 0 // length of b up to the last significant byte
	for p.pos < len(p.s) && !isSeparator(p.s[p.pos]) {
		c := p.s[p.pos]
		switch c {
		case '\\':
			d, err := p.parseEscape(typ)
			if err != nil {
				return AttributeTypeAndValue{}, err
			}
			b = append(b, d)
			keep = len(b)
			continue
		case '"':
			return AttributeTypeAndValue{}, &DNError{Pos: p.pos, Attr: typ, Reason: `unexpected '"' inside value (quote the whole value or escape it as \")`}
		case '<', '>':
			return AttributeTypeAndValue{}, &DNError{Pos: p.pos, Attr: typ, Reason: "unescaped '" + string(c) + "' in value (escape it as \\" + string(c) + ")"}
		}
		b = append(b, c)
		if c != ' ' {
			keep = len(b)
		}
		p.pos++
	}
	return p.finishText(info, typ, b[:keep])
}

// parseQuoted parses a double-quoted value (RFC 1779 style, as in
// O="Key Example, Inc."); backslash escapes work inside the quotes.
func (p *dnParser) parseQuoted(info attrInfo, typ string) (AttributeTypeAndValue, error) {
	open := p.pos
	p.pos++
	var b []byte
	for {
		if p.pos == len(p.s) {
			return AttributeTypeAndValue{}, &DNError{Pos: open, Attr: typ, Reason: "unbalanced quotes"}
		}
		c := p.s[p.pos]
		if c == '"' {
			p.pos++
			break
		}
		if c == '\\' {
			d, err := p.parseEscape(typ)
			if err != nil {
				return AttributeTypeAndValue{}, err
			}
			b = append(b, d)
			continue
		}
		b = append(b, c)
		p.pos++
	}
	p.skipSpaces()
	if p.pos < len(p.s) && !isSeparator(p.s[p.pos]) {
		return AttributeTypeAndValue{}, &DNError{Pos: p.pos, Attr: typ, Reason: "unexpected character after quoted value"}
	}
	return p.finishText(info, typ, b)
}

// parseEscape decodes one backslash escape at pos and advances past it.
func (p *dnParser) parseEscape(typ string) (byte, error) {
	at := p.pos
	if p.pos+1 >= len(p.s) {
		return 0, &DNError{Pos: at, Attr: typ, Reason: "backslash at end of value"}
	}
	c := p.s[p.pos+1]
	if strings.IndexByte(`,+";<>\=# `, c) >= 0 {
		p.pos += 2
		return c, nil
	}
	if isHex(c) && p.pos+2 < len(p.s) && isHex(p.s[p.pos+2]) {
		p.pos += 3
		return unhex(c)<<4 | unhex(p.s[at+2]), nil
	}
	return 0, &DNError{Pos: at, Attr: typ, Reason: "bad escape sequence (use \\ before one of ,+\";<>\\=# space, or two hex digits)"}
}

// finishText turns the decoded bytes of a string value into an AVA.
func (p *dnParser) finishText(info attrInfo, typ string, b []byte) (AttributeTypeAndValue, error) {
	if !utf8.Valid(b) {
		return AttributeTypeAndValue{}, &DNError{Pos: p.avaPos, Attr: typ, Reason: "escaped bytes are not valid UTF-8"}
	}
	return AttributeTypeAndValue{Type: info.oid, Value: string(b), Tag: info.tag}, nil
}

// parseHex parses "#" hexstring: the BER/DER encoding of the value.
func (p *dnParser) parseHex(info attrInfo, typ string) (AttributeTypeAndValue, error) {
	start := p.pos
	p.pos++
	for p.pos < len(p.s) && isHex(p.s[p.pos]) {
		p.pos++
	}
	digits := p.s[start+1 : p.pos]
	p.skipSpaces()
	if p.pos < len(p.s) && !isSeparator(p.s[p.pos]) {
		return AttributeTypeAndValue{}, &DNError{Pos: p.pos, Attr: typ, Reason: `value starting with '#' must be hex (escape a literal leading '#' as \#)`}
	}
	if digits == "" || len(digits)%2 != 0 {
		return AttributeTypeAndValue{}, &DNError{Pos: start, Attr: typ, Reason: "hex value needs a non-empty even number of hex digits"}
	}
	raw := make([]byte, len(digits)/2)
	for i := range raw {
		raw[i] = unhex(digits[2*i])<<4 | unhex(digits[2*i+1])
	}
	ava, reason := decodeRawValue(info, raw)
	if reason != "" {
		return AttributeTypeAndValue{}, &DNError{Pos: start, Attr: typ, Reason: reason}
	}
	return ava, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func firstInvalidUTF8(s string) int {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return i
			}
		}
	}
	return 0
}
