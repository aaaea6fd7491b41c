package hsm

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// URI is an RFC 7512 PKCS#11 URI naming one object, the form OpenSSL's
// pkcs11 engine and provider, p11-kit, GnuTLS and systemd accept in place of
// a key file.
type URI struct {
	Token        string // CK_TOKEN_INFO label
	Serial       string // CK_TOKEN_INFO serialNumber; "" leaves it out
	Manufacturer string // CK_TOKEN_INFO manufacturerID; "" leaves it out
	Model        string // CK_TOKEN_INFO model; "" leaves it out
	ID           []byte // CKA_ID
	Object       string // CKA_LABEL
	Type         string // "private", "public", "cert", ...; "" leaves it out
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
	if u.Manufacturer != "" {
		attr("manufacturer", u.Manufacturer, false)
	}
	if u.Model != "" {
		attr("model", u.Model, false)
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

// ErrBadURI marks a PKCS#11 URI that does not parse or asks for something csrd
// does not take from a URI.
var ErrBadURI = errors.New("hsm: bad PKCS#11 URI")

// IsURI reports whether s is written as a PKCS#11 URI.
func IsURI(s string) bool { return strings.HasPrefix(strings.ToLower(s), "pkcs11:") }

// ParseURI parses an RFC 7512 PKCS#11 URI ("pkcs11:token=csrd;object=tls;type=private").
// Unknown attributes are refused rather than ignored: an ignored attribute
// would make the URI match more objects than its author meant. pin-value,
// pin-source, module-name and module-path are refused: csrd's module and PIN
// come from its configuration.
func ParseURI(s string) (URI, error) {
	var u URI
	if !IsURI(s) {
		return u, fmt.Errorf("%w: %q does not start with \"pkcs11:\"", ErrBadURI, s)
	}
	rest := s[len("pkcs11:"):]
	path, query, _ := strings.Cut(rest, "?")
	seen := map[string]bool{}
	for _, attr := range split(path, ';') {
		k, raw, ok := strings.Cut(attr, "=")
		if !ok || k == "" {
			return u, fmt.Errorf("%w: attribute %q is not name=value", ErrBadURI, attr)
		}
		if seen[k] {
			return u, fmt.Errorf("%w: attribute %q given twice", ErrBadURI, k)
		}
		seen[k] = true
		v, err := url.PathUnescape(raw)
		if err != nil {
			return u, fmt.Errorf("%w: attribute %s: %v", ErrBadURI, k, err)
		}
		switch k {
		case "token":
			u.Token = v
		case "serial":
			u.Serial = v
		case "manufacturer":
			u.Manufacturer = v
		case "model":
			u.Model = v
		case "object":
			u.Object = v
		case "id":
			u.ID = []byte(v)
		case "type":
			switch v {
			case "private", "public", "cert", "secret-key", "data":
				u.Type = v
			default:
				return u, fmt.Errorf("%w: type %q", ErrBadURI, v)
			}
		default:
			return u, fmt.Errorf("%w: attribute %q is not supported here", ErrBadURI, k)
		}
	}
	for _, q := range split(query, '&') {
		k, _, _ := strings.Cut(q, "=")
		return u, fmt.Errorf("%w: query attribute %q is not accepted (module and PIN come from csrd's configuration)", ErrBadURI, k)
	}
	return u, nil
}

func split(s string, sep byte) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, string(sep))
}

// FindKeyByURI returns the key pair the URI names on t, as a crypto.Signer
// for uses such as the TLS server key. The URI's token attributes must match
// t (csrd is logged in to one token), it must name the object by id, label
// or both, and exactly one key pair may match. Like FindKey it searches the
// token, so call it at start-up, not per request; the Key finds itself again
// after a reconnect.
func (t *Token) FindKeyByURI(ctx context.Context, uri string) (*Key, error) {
	const op = "find key by URI"
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	if u.Type != "" && u.Type != "private" {
		return nil, fmt.Errorf("%w: type=%s, a signing key needs type=private", ErrBadURI, u.Type)
	}
	if len(u.ID) == 0 && u.Object == "" {
		return nil, fmt.Errorf("%w: name the key with id= or object=", ErrBadURI)
	}
	if err := t.begin(ctx, op); err != nil {
		return nil, err
	}
	defer t.end()
	info, err := t.p11.GetTokenInfo(t.slot)
	if err != nil {
		return nil, t.wrap(op, err)
	}
	for _, a := range []struct{ name, want, have string }{
		{"token", u.Token, info.Label}, {"serial", u.Serial, info.SerialNumber},
		{"manufacturer", u.Manufacturer, info.ManufacturerID}, {"model", u.Model, info.Model},
	} {
		if a.want != "" && a.want != strings.TrimRight(a.have, " ") {
			return nil, classErr(op, ErrNotFound, "URI names %s %q; csrd's token has %q", a.name, a.want, a.have)
		}
	}
	var label []byte
	if u.Object != "" {
		label = []byte(u.Object)
	}
	signers, err := t.c11.FindKeyPairs(u.ID, label)
	if err != nil {
		return nil, t.wrap(op, err)
	}
	switch len(signers) {
	case 0:
		return nil, classErr(op, ErrNotFound, "no key pair matches %s", u)
	case 1:
		return t.newKey(KeyRef{ID: u.ID, Label: u.Object}, signers[0]), nil
	default:
		return nil, classErr(op, nil, "%d key pairs match %s; name one by id and object", len(signers), u)
	}
}
