package csr

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"net"
	"reflect"
	"strings"
	"testing"
)

func testSANs(t *testing.T) *SANs {
	t.Helper()
	s, err := ParseSANs(map[string][]string{
		"dns": {"websrvr14.keyexample.com", "*.keyexample.com"}, "ip4": {"192.0.2.10"}, "ip6": {"2001:db8::10"},
		"uri": {"https://keyexample.com/x"}, "rfc822": {"pki@keyexample.com"},
		"ms_ntprincipalname": {"websrvr14$@KEYEXAMPLE.COM"}, "registeredid": {"1.3.6.1.4.1.99999.7"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// generalNames decodes the SAN extension of a parsed CSR into raw names.
func generalNames(t *testing.T, exts []pkix.Extension) []asn1.RawValue {
	t.Helper()
	for _, e := range exts {
		if e.Id.Equal(oidSubjectAltName) {
			var names []asn1.RawValue
			if rest, err := asn1.Unmarshal(e.Value, &names); err != nil || len(rest) != 0 {
				t.Fatalf("SAN extension: %v", err)
			}
			return names
		}
	}
	t.Fatal("no SAN extension")
	return nil
}

func TestBuildAllKeyTypes(t *testing.T) {
	dn, err := ParseDN(keyfactorExample)
	if err != nil {
		t.Fatal(err)
	}
	wantSubject, _ := dn.DER()
	sans := testSANs(t)
	for _, name := range keyNames {
		t.Run(name, func(t *testing.T) {
			signer := testKeys()[name]
			der, err := Build(rand.Reader, &Request{Subject: dn, SANs: sans}, signer)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			out := openssl(t, der, "-verify", "-noout", "-text", "-nameopt", "RFC2253")
			if !strings.Contains(out, "verify OK") {
				t.Errorf("openssl did not verify:\n%s", out)
			}
			if !strings.Contains(out, `Subject: CN=websrvr14.keyexample.com,OU=IT,O=Key Example\, Inc.,L=Independence,ST=OH,C=US`) {
				t.Errorf("openssl subject order wrong:\n%s", out)
			}
			for _, s := range []string{"DNS:websrvr14.keyexample.com", "DNS:*.keyexample.com", "IP Address:192.0.2.10",
				"IP Address:2001:DB8:0:0:0:0:0:10", "URI:https://keyexample.com/x", "email:pki@keyexample.com",
				"websrvr14$@KEYEXAMPLE.COM", "Registered ID:1.3.6.1.4.1.99999.7"} {
				if !strings.Contains(out, s) {
					t.Errorf("openssl output lacks %q:\n%s", s, out)
				}
			}
			if name == "Ed448" {
				return // crypto/x509 does not know Ed448; openssl verified it above.
			}
			req, err := x509.ParseCertificateRequest(der)
			if err != nil {
				t.Fatalf("x509.ParseCertificateRequest: %v", err)
			}
			if err := req.CheckSignature(); err != nil {
				t.Fatalf("CheckSignature: %v", err)
			}
			if req.Version != 0 {
				t.Errorf("version %d", req.Version)
			}
			if !bytes.Equal(req.RawSubject, wantSubject) {
				t.Errorf("RawSubject %x, want %x", req.RawSubject, wantSubject)
			}
			if !reflect.DeepEqual(req.DNSNames, sans.DNS) || !reflect.DeepEqual(req.EmailAddresses, sans.Emails) {
				t.Errorf("DNS %q emails %q", req.DNSNames, req.EmailAddresses)
			}
			if len(req.IPAddresses) != 2 || !req.IPAddresses[0].Equal(net.ParseIP("192.0.2.10")) || !req.IPAddresses[1].Equal(net.ParseIP("2001:db8::10")) {
				t.Errorf("IPs %v", req.IPAddresses)
			}
			if len(req.URIs) != 1 || req.URIs[0].String() != "https://keyexample.com/x" {
				t.Errorf("URIs %v", req.URIs)
			}
			names := generalNames(t, req.Extensions)
			upn := names[len(names)-2]
			wantUPN, _ := otherNameUTF8(oidUPN, "websrvr14$@KEYEXAMPLE.COM")
			if upn.Class != asn1.ClassContextSpecific || upn.Tag != 0 || !upn.IsCompound || !bytes.Equal(upn.Bytes, wantUPN) {
				t.Errorf("otherName %+v", upn)
			}
			var upnOID asn1.ObjectIdentifier
			rest, err := asn1.Unmarshal(upn.Bytes, &upnOID)
			if err != nil || !upnOID.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}) {
				t.Errorf("UPN type-id %v %v", upnOID, err)
			}
			var explicit struct {
				V string `asn1:"explicit,tag:0,utf8"`
			}
			if _, err := asn1.Unmarshal(append([]byte{0x30, byte(len(rest))}, rest...), &explicit); err != nil || explicit.V != "websrvr14$@KEYEXAMPLE.COM" {
				t.Errorf("UPN value %q %v", explicit.V, err)
			}
			rid := names[len(names)-1]
			if rid.Class != asn1.ClassContextSpecific || rid.Tag != 8 || rid.IsCompound {
				t.Errorf("registeredID %+v", rid)
			}
			var ridOID asn1.ObjectIdentifier
			if _, err := asn1.Unmarshal(append([]byte{0x06, byte(len(rid.Bytes))}, rid.Bytes...), &ridOID); err != nil || ridOID.String() != "1.3.6.1.4.1.99999.7" {
				t.Errorf("registeredID %v %v", ridOID, err)
			}
			for _, e := range req.Extensions {
				if e.Critical {
					t.Errorf("extension %v critical with a subject", e.Id)
				}
			}
		})
	}
}

func TestBuildOpenSSLTextSubject(t *testing.T) {
	dn, err := ParseDN(keyfactorExample)
	if err != nil {
		t.Fatal(err)
	}
	der, err := Build(rand.Reader, &Request{Subject: dn}, testKeys()["P-256"])
	if err != nil {
		t.Fatal(err)
	}
	// OpenSSL's default -text form prints RDNs in DER order.
	out := openssl(t, der, "-noout", "-text")
	if want := `Subject: C = US, ST = OH, L = Independence, O = "Key Example, Inc.", OU = IT, CN = websrvr14.keyexample.com`; !strings.Contains(out, want) {
		t.Errorf("openssl -text lacks %q:\n%s", want, out)
	}
	out = openssl(t, der, "-noout", "-subject", "-nameopt", "RFC2253")
	if want := `subject=CN=websrvr14.keyexample.com,OU=IT,O=Key Example\, Inc.,L=Independence,ST=OH,C=US`; strings.TrimSpace(out) != want {
		t.Errorf("openssl -subject = %q, want %q", out, want)
	}
}

func TestBuildShapes(t *testing.T) {
	key := testKeys()["P-256"]
	dn, _ := ParseDN("CN=x+UID=y,O=z")
	sans, _ := ParseSANs(map[string][]string{"dns": {"x.example"}})
	tests := []struct {
		name         string
		req          *Request
		wantCritical bool
		wantExt      bool
	}{
		{"subject only: empty attributes", &Request{Subject: dn}, false, false},
		{"subject only: empty SANs struct", &Request{Subject: dn, SANs: &SANs{}}, false, false},
		{"subject and SANs", &Request{Subject: dn, SANs: sans}, false, true},
		{"empty subject: SAN critical", &Request{SANs: sans}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			der, err := Build(rand.Reader, tt.req, key)
			if err != nil {
				t.Fatal(err)
			}
			openssl(t, der, "-verify", "-noout")
			req, err := x509.ParseCertificateRequest(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := req.CheckSignature(); err != nil {
				t.Fatal(err)
			}
			if got := len(req.Extensions) == 1; got != tt.wantExt {
				t.Fatalf("extensions %v", req.Extensions)
			}
			if tt.wantExt && req.Extensions[0].Critical != tt.wantCritical {
				t.Errorf("critical = %v", req.Extensions[0].Critical)
			}
			if !tt.wantExt && !bytes.HasSuffix(req.RawTBSCertificateRequest, []byte{0xa0, 0x00}) {
				t.Errorf("no empty [0] attributes at the end of the CRI: %x", req.RawTBSCertificateRequest)
			}
		})
	}
}

func TestBuildExtraAttributesSorted(t *testing.T) {
	key := testKeys()["Ed25519"]
	dn, _ := ParseDN("CN=hybrid")
	sans, _ := ParseSANs(map[string][]string{"dns": {"h.example"}})
	mk := func(oid asn1.ObjectIdentifier, vals ...string) Attribute {
		a := Attribute{Type: oid}
		for _, v := range vals {
			a.Values = append(a.Values, asn1.RawValue{Tag: asn1.TagOctetString, Bytes: []byte(v)})
		}
		return a
	}
	req := &Request{Subject: dn, SANs: sans, ExtraAttributes: []Attribute{
		mk(asn1.ObjectIdentifier{2, 5, 29, 74}, "zz", "a"),
		mk(asn1.ObjectIdentifier{2, 5, 29, 72}, "x"),
	}}
	der, err := Build(rand.Reader, req, key)
	if err != nil {
		t.Fatal(err)
	}
	openssl(t, der, "-verify", "-noout")
	parsed, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	var cri struct {
		Version    int
		Subject    asn1.RawValue
		SPKI       asn1.RawValue
		Attributes []asn1.RawValue `asn1:"tag:0,set"`
	}
	if _, err := asn1.Unmarshal(parsed.RawTBSCertificateRequest, &cri); err != nil {
		t.Fatal(err)
	}
	if len(cri.Attributes) != 3 {
		t.Fatalf("%d attributes", len(cri.Attributes))
	}
	for i := 1; i < len(cri.Attributes); i++ {
		if bytes.Compare(cri.Attributes[i-1].FullBytes, cri.Attributes[i].FullBytes) >= 0 {
			t.Errorf("attributes not DER-sorted at %d", i)
		}
	}
	// Values inside an attribute are a sorted SET OF too: "a" before "zz".
	found := false
	for _, raw := range cri.Attributes {
		var a struct {
			Type   asn1.ObjectIdentifier
			Values []asn1.RawValue `asn1:"set"`
		}
		if _, err := asn1.Unmarshal(raw.FullBytes, &a); err != nil {
			t.Fatal(err)
		}
		if !a.Type.Equal(asn1.ObjectIdentifier{2, 5, 29, 74}) {
			continue
		}
		found = true
		if len(a.Values) != 2 || string(a.Values[0].Bytes) != "a" || string(a.Values[1].Bytes) != "zz" {
			t.Errorf("attribute %v values %+v", a.Type, a.Values)
		}
	}
	if !found {
		t.Error("attribute 2.5.29.74 missing")
	}
}

func TestPEM(t *testing.T) {
	got := PEM([]byte{0x30, 0x00})
	want := "-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n"
	if got != want {
		t.Errorf("PEM = %q, want %q", got, want)
	}
	if b, _ := pem.Decode([]byte(got)); b == nil || b.Type != "CERTIFICATE REQUEST" {
		t.Error("PEM does not decode")
	}
}
