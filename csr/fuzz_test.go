package csr

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzParseDN checks that ParseDN never panics and that String() of every
// accepted DN parses back to the same DER.
func FuzzParseDN(f *testing.F) {
	for _, s := range []string{
		keyfactorExample, "CN=a+UID=b,O=x", `CN=\,\+\"\\\;\<\>\=\#x\ y\ `, `CN=caf\C3\A9`,
		"1.2.3=#0C03616263", "CN=#1E0400E90041", "CN=#1402E941", `O="a, \"b\"" ; C=US`, "OID.2.5.4.3=x",
		"E=a@b,DC=c", `CN=\  a  \ `, "CN=a=b#c", "SERIALNUMBER=1", "CN=", `O="x`, "CN=a\\", "C=USA",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dn, err := ParseDN(s)
		if err != nil {
			return
		}
		der, err := dn.DER()
		if err != nil {
			t.Fatalf("DER of parsed %q: %v", s, err)
		}
		str := dn.String()
		again, err := ParseDN(str)
		if err != nil {
			t.Fatalf("String() %q of %q does not re-parse: %v", str, s, err)
		}
		der2, err := again.DER()
		if err != nil || !bytes.Equal(der, der2) {
			t.Fatalf("round trip of %q via %q changed DER:\n%x\n%x", s, str, der, der2)
		}
	})
}

// FuzzParseSANs checks that ParseSANs never panics, that accepted SANs
// always encode, and that normalisation is idempotent: the normalised values
// parse to the same SANs.
func FuzzParseSANs(f *testing.F) {
	f.Add("dns", "Bücher.example", "ip", "::1")
	f.Add("dns", "*.example.com", "uri", "spiffe://t/x")
	f.Add("email", "a@B.example", "upn", "u@d")
	f.Add("registeredid", "1.2.3", "ip4", "10.0.0.1")
	f.Add("DNS", "a..b", "other", "x")
	f.Add("ip6", "::ffff:1.2.3.4", "rfc822", "x@ドメイン.テスト")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		m := map[string][]string{k1: {v1}}
		m[k2] = append(m[k2], v2)
		s, err := ParseSANs(m)
		if err != nil {
			return
		}
		if !s.Empty() {
			if _, err := s.Extension(); err != nil {
				t.Fatalf("Extension of %v: %v", m, err)
			}
		}
		norm := map[string][]string{"dns": s.DNS, "uri": s.URIs, "email": s.Emails, "upn": s.UPNs}
		for _, ip := range s.IPs {
			norm["ip"] = append(norm["ip"], ip.String())
		}
		for _, oid := range s.RegisteredIDs {
			norm["registeredid"] = append(norm["registeredid"], oid.String())
		}
		again, err := ParseSANs(norm)
		if err != nil {
			t.Fatalf("normalised %v rejected: %v", norm, err)
		}
		if !reflect.DeepEqual(again.Strings(), s.Strings()) {
			t.Fatalf("normalisation not idempotent: %q vs %q", again.Strings(), s.Strings())
		}
	})
}
