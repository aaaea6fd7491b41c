package csr

import (
	"encoding/asn1"
	"fmt"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// checkValue validates a decoded value against its attribute type and
// returns a human reason, or "" when the value is acceptable.
func checkValue(info attrInfo, ava AttributeTypeAndValue) string {
	v := ava.Value
	if v == "" {
		return "empty value"
	}
	if !utf8.ValidString(v) {
		return "invalid UTF-8"
	}
	if reason := checkControls(v); reason != "" {
		return reason
	}
	tag := ava.Tag
	if tag == 0 {
		tag = info.tag
	}
	if reason := checkAlphabet(tag, v); reason != "" {
		return reason
	}
	if info.oid.Equal(oidCountry) && (len(v) != 2 || !isLetter(v[0]) || !isLetter(v[1])) {
		return "country must be a two-letter ISO 3166 code"
	}
	if info.ub > 0 && utf8.RuneCountInString(v) > info.ub {
		return fmt.Sprintf("value longer than %d characters", info.ub)
	}
	return ""
}

// checkControls refuses NUL and other control characters, which no
// directory string type should carry into a subject.
func checkControls(v string) string {
	for _, r := range v {
		if r == 0 {
			return "NUL character in value"
		}
		if unicode.IsControl(r) {
			return fmt.Sprintf("control character %U in value", r)
		}
	}
	return ""
}

// checkAlphabet checks v against the alphabet of the string type tag;
// UTF8String, BMPString and TeletexString take any character left.
func checkAlphabet(tag int, v string) string {
	switch tag {
	case asn1.TagPrintableString:
		for i := 0; i < len(v); i++ {
			if !isPrintable(v[i]) {
				return fmt.Sprintf("character %q not allowed in PrintableString (letters, digits, space and '()+,-./:=? only)", firstRune(v[i:]))
			}
		}
	case asn1.TagIA5String:
		for _, r := range v {
			if r >= utf8.RuneSelf {
				return fmt.Sprintf("non-ASCII character %q not allowed in IA5String", r)
			}
		}
	}
	return ""
}

// isPrintable reports whether c is in the ASN.1 PrintableString alphabet
// (X.680 41.4); '*', '&' and '@' are not, whatever some encoders do.
func isPrintable(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == ' ' || c == '\'' || c == '(' || c == ')' || c == '+' || c == ',' ||
		c == '-' || c == '.' || c == '/' || c == ':' || c == '=' || c == '?'
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func firstRune(s string) rune {
	r, _ := utf8.DecodeRuneInString(s)
	return r
}

// decodeRawValue checks that raw is exactly one well-formed DER TLV of a
// directory string type and decodes it. Other types (OCTET STRING,
// UniversalString, constructed values, ...) are refused: OpenSSL and most CAs
// cannot handle them in a subject.
func decodeRawValue(info attrInfo, raw []byte) (AttributeTypeAndValue, string) {
	var rv asn1.RawValue
	rest, err := asn1.Unmarshal(raw, &rv)
	if err != nil {
		return AttributeTypeAndValue{}, "hex value is not a well-formed DER TLV"
	}
	if len(rest) != 0 {
		return AttributeTypeAndValue{}, "hex value has trailing bytes after the DER TLV"
	}
	if rv.Class != asn1.ClassUniversal || rv.IsCompound {
		return AttributeTypeAndValue{}, "hex value must be a primitive universal string type"
	}
	var v string
	switch rv.Tag {
	case asn1.TagUTF8String:
		if !utf8.Valid(rv.Bytes) {
			return AttributeTypeAndValue{}, "hex UTF8String is not valid UTF-8"
		}
		v = string(rv.Bytes)
	case asn1.TagPrintableString, asn1.TagIA5String:
		v = string(rv.Bytes) // alphabet checked by checkValue
	case asn1.TagBMPString:
		if len(rv.Bytes)%2 != 0 {
			return AttributeTypeAndValue{}, "hex BMPString has an odd number of bytes"
		}
		u := make([]uint16, len(rv.Bytes)/2)
		for i := range u {
			u[i] = uint16(rv.Bytes[2*i])<<8 | uint16(rv.Bytes[2*i+1])
			if utf16.IsSurrogate(rune(u[i])) {
				return AttributeTypeAndValue{}, "hex BMPString contains a surrogate"
			}
		}
		v = string(utf16.Decode(u))
	case asn1.TagT61String:
		// Treated as Latin-1, which is what T61 means in practice.
		r := make([]rune, len(rv.Bytes))
		for i, c := range rv.Bytes {
			r[i] = rune(c)
		}
		v = string(r)
	default:
		return AttributeTypeAndValue{}, fmt.Sprintf("hex value has ASN.1 tag %d; only UTF8String, PrintableString, IA5String, BMPString and TeletexString are accepted", rv.Tag)
	}
	if info.fixed && rv.Tag != info.tag {
		return AttributeTypeAndValue{}, fmt.Sprintf("hex value must be a %s for %s", tagName(info.tag), info.name)
	}
	return AttributeTypeAndValue{Type: info.oid, Value: v, Tag: rv.Tag, Raw: append([]byte(nil), raw...)}, ""
}

func tagName(tag int) string {
	switch tag {
	case asn1.TagUTF8String:
		return "UTF8String"
	case asn1.TagPrintableString:
		return "PrintableString"
	case asn1.TagIA5String:
		return "IA5String"
	case asn1.TagBMPString:
		return "BMPString"
	case asn1.TagT61String:
		return "TeletexString"
	}
	return fmt.Sprintf("tag %d", tag)
}

// encodeValue returns the DER of an AVA's value: Raw unchanged when set,
// else Value in Tag (or the attribute's default type).
func encodeValue(ava AttributeTypeAndValue) ([]byte, error) {
	if ava.Raw != nil {
		return ava.Raw, nil
	}
	tag := ava.Tag
	if tag == 0 {
		tag = attrByOID(ava.Type).tag
	}
	var content []byte
	switch tag {
	case asn1.TagUTF8String, asn1.TagPrintableString, asn1.TagIA5String:
		content = []byte(ava.Value)
	case asn1.TagBMPString:
		for _, u := range utf16.Encode([]rune(ava.Value)) {
			if utf16.IsSurrogate(rune(u)) {
				return nil, fmt.Errorf("character outside the BMP cannot be a BMPString")
			}
			content = append(content, byte(u>>8), byte(u))
		}
	case asn1.TagT61String:
		for _, r := range ava.Value {
			if r > 0xff {
				return nil, fmt.Errorf("character %q cannot be a TeletexString", r)
			}
			content = append(content, byte(r))
		}
	default:
		return nil, fmt.Errorf("unsupported string type %d", tag)
	}
	return asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: tag, Bytes: content})
}
