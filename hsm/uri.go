package hsm

import (
	"strings"
)

// URI is an RFC 7512 PKCS#11 URI naming one object, the form OpenSSL's
// pkcs11 engine and provider, p11-kit, GnuTLS and systemd accept in place of
// a key file.
type URI struct {
	Token  string // CK_TOKEN_INFO label
	Serial string // CK_TOKEN_INFO serialNumber; "" leaves it out
	ID     []byte // CKA_ID
	Object string // CKA_LABEL
	Type   string // "private", "public", "cert", ...; "" leaves it out
}

// KeyURI is the URI of the private key ref on the token labelled token
// (with serial, when known).
func KeyURI(token, serial string, ref KeyRef) URI {
	return URI{Token: token, Serial: serial, ID: ref.ID, Object: ref.Label, Type: "private"}
}

// String formats u. Attribute values are percent-encoded except for RFC
// 3986 unreserved characters, which RFC 7512 always allows, so labels with
// spaces, ';', '/' or non-ASCII bytes stay unambiguous; the CKA_ID, being
// binary, is percent-encoded entirely, as RFC 7512 recommends. A PIN never
// goes into a URI csrd hands out.
func (u URI) String() string {
	var b strings.Builder
	b.WriteString("pkcs11:")
	sep := ""
	attr := func(name, value string, all bool) {
		b.WriteString(sep)
		sep = ";"
		b.WriteString(name)
		b.WriteByte('=')
		pctEncode(&b, value, all)
	}
	if u.Token != "" {
		attr("token", u.Token, false)
	}
	if u.Serial != "" {
		attr("serial", u.Serial, false)
	}
	if len(u.ID) > 0 {
		attr("id", string(u.ID), true)
	}
	if u.Object != "" {
		attr("object", u.Object, false)
	}
	if u.Type != "" {
		attr("type", u.Type, false)
	}
	return b.String()
}

func pctEncode(b *strings.Builder, s string, all bool) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !all && unreserved(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0x0f])
	}
}

// unreserved is RFC 3986's unreserved set: ALPHA / DIGIT / "-" / "." / "_" / "~".
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
