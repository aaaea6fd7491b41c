package csr

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
)

func TestParseSANsGood(t *testing.T) {
	tests := []struct {
		name string
		in   map[string][]string
		want []string // Strings()
	}{
		{"nil map", nil, []string{}},
		{"empty arrays", map[string][]string{"dns": {}}, []string{}},
		{"dns lower-cased", map[string][]string{"dns": {"WWW.Example.COM"}}, []string{"DNS:www.example.com"}},
		{"dns IDN to A-label", map[string][]string{"dns": {"Bücher.example", "ドメイン.テスト"}},
			[]string{"DNS:xn--bcher-kva.example", "DNS:xn--eckwd4c7c.xn--zckzah"}},
		{"dns A-label kept", map[string][]string{"dns": {"xn--bcher-kva.example"}}, []string{"DNS:xn--bcher-kva.example"}},
		{"dns wildcard", map[string][]string{"dns": {"*.Example.com"}}, []string{"DNS:*.example.com"}},
		{"dns single label", map[string][]string{"dns": {"localhost"}}, []string{"DNS:localhost"}},
		{"dns digits and hyphen", map[string][]string{"dns": {"a-1.9b.example"}}, []string{"DNS:a-1.9b.example"}},
		{"dns dedup after normalisation", map[string][]string{"dns": {"a.example", "A.EXAMPLE", "b.example", "a.example"}},
			[]string{"DNS:a.example", "DNS:b.example"}},
		{"dns dedup IDN vs A-label", map[string][]string{"dns": {"bücher.example", "xn--bcher-kva.example"}},
			[]string{"DNS:xn--bcher-kva.example"}},
		{"keys case-insensitive", map[string][]string{"DNS": {"a.example"}, "Ip4": {"10.0.0.1"}}, []string{"DNS:a.example", "IP:10.0.0.1"}},
		{"ip4 ip6 ip", map[string][]string{"ip4": {"192.0.2.1"}, "ip6": {"2001:DB8::1"}, "ip": {"192.0.2.2", "::1"}},
			[]string{"IP:192.0.2.2", "IP:::1", "IP:192.0.2.1", "IP:2001:db8::1"}},
		{"ip dedup across keys", map[string][]string{"ip": {"192.0.2.1"}, "ip4": {"192.0.2.1"}}, []string{"IP:192.0.2.1"}},
		{"uri", map[string][]string{"uri": {"HTTPS://example.com/a?b#c", "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "spiffe://trust.example/ns/x", "ldap://[2001:db8::1]/o=x"}},
			[]string{"URI:https://example.com/a?b#c", "URI:urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "URI:spiffe://trust.example/ns/x", "URI:ldap://[2001:db8::1]/o=x"}},
		{"rfc822 and email alias", map[string][]string{"rfc822": {"John.Doe+x@Example.COM"}, "email": {"a@bücher.example"}},
			[]string{"email:a@xn--bcher-kva.example", "email:John.Doe+x@example.com"}},
		{"upn both keys", map[string][]string{"ms_ntprincipalname": {"user@corp.example"}, "upn": {"jürgen@CORP", "user@corp.example"}},
			[]string{"UPN:user@corp.example", "UPN:jürgen@CORP"}},
		{"registeredid", map[string][]string{"registeredid": {"1.3.6.1.4.1.99999.1", "2.999.1"}}, []string{"RID:1.3.6.1.4.1.99999.1", "RID:2.999.1"}},
		{"type order fixed", map[string][]string{"registeredid": {"1.2.3"}, "upn": {"u@d"}, "email": {"e@d.example"}, "uri": {"urn:x"}, "ip": {"10.1.1.1"}, "dns": {"d.example"}},
			[]string{"DNS:d.example", "IP:10.1.1.1", "URI:urn:x", "email:e@d.example", "UPN:u@d", "RID:1.2.3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSANs(tt.in)
			if err != nil {
				t.Fatalf("ParseSANs: %v", err)
			}
			got := s.Strings()
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Strings() = %q, want %q", got, tt.want)
			}
			if s.Count() != len(tt.want) || s.Empty() != (len(tt.want) == 0) {
				t.Errorf("Count() = %d, Empty() = %v", s.Count(), s.Empty())
			}
		})
	}
}

func TestParseSANsBad(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		name   string
		in     map[string][]string
		key    string
		value  string
		reason string
	}{
		{"unknown key", map[string][]string{"foo": {"x"}}, "foo", "", "unknown SAN type"},
		{"unsupported other", map[string][]string{"other": {"x"}}, "other", "", "not supported"},
		{"unsupported directory", map[string][]string{"Directory": {"CN=x"}}, "Directory", "", "not supported"},
		{"unsupported x400", map[string][]string{"x400": {"x"}}, "x400", "", "not supported"},
		{"unsupported ediparty", map[string][]string{"ediparty": {"x"}}, "ediparty", "", "not supported"},
		{"unsupported ms_ntdsreplication", map[string][]string{"ms_ntdsreplication": {"x"}}, "ms_ntdsreplication", "", "not supported"},
		{"empty string", map[string][]string{"dns": {"a.example", ""}}, "dns", "", "empty value"},
		{"dns empty label", map[string][]string{"dns": {"a..b"}}, "dns", "a..b", "empty label"},
		{"dns leading dot", map[string][]string{"dns": {".a.b"}}, "dns", ".a.b", "empty label"},
		{"dns trailing dot", map[string][]string{"dns": {"a.b."}}, "dns", "a.b.", "trailing dot"},
		{"dns partial wildcard", map[string][]string{"dns": {"a*.example.com"}}, "dns", "a*.example.com", "wildcard"},
		{"dns double wildcard", map[string][]string{"dns": {"*.*.x"}}, "dns", "*.*.x", "wildcard"},
		{"dns inner wildcard", map[string][]string{"dns": {"x.*.y"}}, "dns", "x.*.y", "wildcard"},
		{"dns bare wildcard", map[string][]string{"dns": {"*"}}, "dns", "*", "wildcard"},
		{"dns wildcard without domain", map[string][]string{"dns": {"*."}}, "dns", "*.", "trailing dot"},
		{"dns label too long", map[string][]string{"dns": {long + "a.example"}}, "dns", long + "a.example", "63"},
		{"dns name too long", map[string][]string{"dns": {strings.Repeat(long+".", 4) + "ab"}}, "dns", strings.Repeat(long+".", 4) + "ab", "253"},
		{"dns underscore", map[string][]string{"dns": {"_acme.example"}}, "dns", "_acme.example", "'_' not allowed"},
		{"dns leading hyphen", map[string][]string{"dns": {"-a.example"}}, "dns", "-a.example", "starts or ends with '-'"},
		{"dns space", map[string][]string{"dns": {"a b.example"}}, "dns", "a b.example", "whitespace"},
		{"dns IP address", map[string][]string{"dns": {"192.0.2.1"}}, "dns", "192.0.2.1", "ip4"},
		{"dns bad punycode", map[string][]string{"dns": {"xn--zz.example"}}, "dns", "xn--zz.example", "IDNA"},
		{"ip4 given IPv6", map[string][]string{"ip4": {"::1"}}, "ip4", "::1", "not an IPv4"},
		{"ip6 given IPv4", map[string][]string{"ip6": {"10.0.0.1"}}, "ip6", "10.0.0.1", "not an IPv6"},
		{"ip6 v4-mapped", map[string][]string{"ip6": {"::ffff:10.0.0.1"}}, "ip6", "::ffff:10.0.0.1", "IPv4-mapped"},
		{"ip v4-mapped", map[string][]string{"ip": {"::ffff:10.0.0.1"}}, "ip", "::ffff:10.0.0.1", "IPv4-mapped"},
		{"ip garbage", map[string][]string{"ip": {"10.0.0"}}, "ip", "10.0.0", "not an IP"},
		{"ip leading zero", map[string][]string{"ip4": {"010.0.0.1"}}, "ip4", "010.0.0.1", "not an IP"},
		{"ip CIDR", map[string][]string{"ip": {"10.0.0.0/8"}}, "ip", "10.0.0.0/8", "not an IP"},
		{"ip zone", map[string][]string{"ip6": {"fe80::1%eth0"}}, "ip6", "fe80::1%eth0", "zone"},
		{"uri relative", map[string][]string{"uri": {"/path"}}, "uri", "/path", "scheme"},
		{"uri space", map[string][]string{"uri": {"https://a.example/x y"}}, "uri", "https://a.example/x y", "spaces"},
		{"uri non-ASCII", map[string][]string{"uri": {"https://bücher.example/"}}, "uri", "https://bücher.example/", "ASCII"},
		{"uri empty host", map[string][]string{"uri": {"file:///etc/passwd"}}, "uri", "file:///etc/passwd", "without a host"},
		{"uri scheme only", map[string][]string{"uri": {"urn:"}}, "uri", "urn:", "scheme-specific"},
		{"uri bad host", map[string][]string{"uri": {"https://a..b/"}}, "uri", "https://a..b/", "empty label"},
		{"email no at", map[string][]string{"rfc822": {"user.example.com"}}, "rfc822", "user.example.com", "local-part@domain"},
		{"email empty local", map[string][]string{"email": {"@example.com"}}, "email", "@example.com", "local-part@domain"},
		{"email bad domain", map[string][]string{"email": {"a@b..c"}}, "email", "a@b..c", "domain: empty label"},
		{"email non-ASCII local", map[string][]string{"email": {"jürgen@example.com"}}, "email", "jürgen@example.com", "non-ASCII"},
		{"email double dot", map[string][]string{"email": {"a..b@example.com"}}, "email", "a..b@example.com", "'.'"},
		{"email two ats", map[string][]string{"email": {"a@b@example.com"}}, "email", "a@b@example.com", "not allowed"},
		{"upn no at", map[string][]string{"upn": {"user"}}, "upn", "user", "user@suffix"},
		{"upn space", map[string][]string{"ms_ntprincipalname": {"a b@c"}}, "ms_ntprincipalname", "a b@c", "whitespace"},
		{"rid not OID", map[string][]string{"registeredid": {"1.2.x"}}, "registeredid", "1.2.x", "OID"},
		{"rid one arc", map[string][]string{"registeredid": {"1"}}, "registeredid", "1", "OID"},
		{"invalid UTF-8", map[string][]string{"rfc822": {"0@0\xa1"}}, "rfc822", "0@0\xa1", "invalid UTF-8"},
		{"value too long", map[string][]string{"upn": {strings.Repeat("a", 1020) + "@b.cd"}}, "upn", strings.Repeat("a", 1020) + "@b.cd", "1024"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSANs(tt.in)
			if !errors.Is(err, ErrInvalidSAN) {
				t.Fatalf("ParseSANs(%v) = %v, want ErrInvalidSAN", tt.in, err)
			}
			var se *SANError
			if !errors.As(err, &se) {
				t.Fatalf("error %T is not *SANError", err)
			}
			if se.Key != tt.key || se.Value != tt.value || !strings.Contains(se.Reason, tt.reason) {
				t.Errorf("got {Key:%q Value:%q Reason:%q}, want {Key:%q Value:%q Reason~%q}", se.Key, se.Value, se.Reason, tt.key, tt.value, tt.reason)
			}
		})
	}
}

func TestSANErrorMessage(t *testing.T) {
	_, err := ParseSANs(map[string][]string{"dns": {"a..b"}})
	if want := `csr: SANs: dns value "a..b": empty label`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
	_, err = ParseSANs(map[string][]string{"x400": {"x"}})
	if want := `csr: SANs: key "x400": SAN type not supported by csrd`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
}

func TestParseSANsLimits(t *testing.T) {
	many := make([]string, MaxSANValues)
	for i := range many {
		many[i] = fmt.Sprintf("h%d.example", i)
	}
	s, err := ParseSANs(map[string][]string{"dns": many})
	if err != nil || s.Count() != MaxSANValues {
		t.Fatalf("%d values: %v", MaxSANValues, err)
	}
	_, err = ParseSANs(map[string][]string{"dns": many, "ip": {"10.0.0.1"}})
	if !errors.Is(err, ErrInvalidSAN) {
		t.Fatalf("%d values: err = %v", MaxSANValues+1, err)
	}
	// Duplicates count against the cap: it bounds work, not output.
	dups := make([]string, MaxSANValues+1)
	for i := range dups {
		dups[i] = "a.example"
	}
	if _, err := ParseSANs(map[string][]string{"dns": dups}); !errors.Is(err, ErrInvalidSAN) {
		t.Fatalf("duplicates over cap: err = %v", err)
	}
}

func TestSANsNil(t *testing.T) {
	var s *SANs
	if !s.Empty() || s.Count() != 0 || s.Strings() != nil {
		t.Error("nil SANs not empty")
	}
	if _, err := s.Extension(); !errors.Is(err, ErrInvalidSAN) {
		t.Errorf("Extension of nil SANs: %v", err)
	}
}

// TestSANExtensionDER checks the GeneralNames bytes, including the ones
// crypto/x509 cannot produce (otherName UPN, registeredID).
func TestSANExtensionDER(t *testing.T) {
	s, err := ParseSANs(map[string][]string{
		"dns": {"a.example"}, "ip": {"10.0.0.1", "2001:db8::1"}, "uri": {"urn:x"},
		"email": {"e@f.example"}, "upn": {"u@d"}, "registeredid": {"1.2.840.1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ext, err := s.Extension()
	if err != nil {
		t.Fatal(err)
	}
	if !ext.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) || ext.Critical {
		t.Errorf("ext id/critical = %v/%v", ext.Id, ext.Critical)
	}
	var want []byte
	want = append(want, 0x82, 9)
	want = append(want, "a.example"...)
	want = append(want, 0x87, 4, 10, 0, 0, 1)
	want = append(want, 0x87, 16, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)
	want = append(want, 0x86, 5)
	want = append(want, "urn:x"...)
	want = append(want, 0x81, 11)
	want = append(want, "e@f.example"...)
	// otherName [0] { OID 1.3.6.1.4.1.311.20.2.3, [0] { UTF8String "u@d" } }
	want = append(want, 0xa0, 0x13, 0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x14, 0x02, 0x03,
		0xa0, 0x05, 0x0c, 0x03, 'u', '@', 'd')
	// registeredID [8] IMPLICIT OID 1.2.840.1
	want = append(want, 0x88, 0x04, 0x2a, 0x86, 0x48, 0x01)
	want = append([]byte{0x30, byte(len(want))}, want...)
	if !bytes.Equal(ext.Value, want) {
		t.Fatalf("GeneralNames\n got %x\nwant %x", ext.Value, want)
	}

	// crypto/x509 must read the names it knows back.
	var raw asn1.RawValue
	if rest, err := asn1.Unmarshal(ext.Value, &raw); err != nil || len(rest) != 0 {
		t.Fatalf("GeneralNames not one DER element: %v", err)
	}
	if got := s.IPs[0]; !got.Equal(net.ParseIP("10.0.0.1")) || len(got) != 4 {
		t.Errorf("IPv4 not stored as 4 bytes: %v", []byte(got))
	}
}
