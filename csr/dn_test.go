package csr

import (
	"bytes"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"crypto/x509/pkix"
)

// tv builds an expected AttributeTypeAndValue with an explicit string tag,
// independently of the code under test.
func tv(oid asn1.ObjectIdentifier, tag int, v string) pkix.AttributeTypeAndValue {
	return pkix.AttributeTypeAndValue{Type: oid, Value: asn1.RawValue{Tag: tag, Bytes: []byte(v)}}
}

func utf(oid asn1.ObjectIdentifier, v string) pkix.AttributeTypeAndValue {
	return tv(oid, asn1.TagUTF8String, v)
}

func prt(oid asn1.ObjectIdentifier, v string) pkix.AttributeTypeAndValue {
	return tv(oid, asn1.TagPrintableString, v)
}

func ia5(oid asn1.ObjectIdentifier, v string) pkix.AttributeTypeAndValue {
	return tv(oid, asn1.TagIA5String, v)
}

// seq is an expected RDNSequence in DER order (least specific first);
// encoding/asn1 sorts each SET OF.
func seq(rdns ...[]pkix.AttributeTypeAndValue) []byte {
	var s pkix.RDNSequence
	for _, r := range rdns {
		s = append(s, pkix.RelativeDistinguishedNameSET(r))
	}
	b, err := asn1.Marshal(s)
	if err != nil {
		panic(err)
	}
	return b
}

func one(a pkix.AttributeTypeAndValue) []pkix.AttributeTypeAndValue {
	return []pkix.AttributeTypeAndValue{a}
}

func multi(a ...pkix.AttributeTypeAndValue) []pkix.AttributeTypeAndValue { return a }

const keyfactorExample = `CN=websrvr14.keyexample.com,OU=IT,O="Key Example, Inc.",L=Independence,ST=OH,C=US`

func TestParseDNGood(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []byte // RDNSequence DER
		str  string // DN.String()
	}{
		{"keyfactor example", keyfactorExample,
			seq(one(prt(oidCountry, "US")), one(utf(oidState, "OH")), one(utf(oidLocality, "Independence")),
				one(utf(oidOrganization, "Key Example, Inc.")), one(utf(oidOrganizationalUnit, "IT")),
				one(utf(oidCN, "websrvr14.keyexample.com"))),
			`CN=websrvr14.keyexample.com,OU=IT,O=Key Example\, Inc.,L=Independence,ST=OH,C=US`},
		{"multi-valued RDN", "CN=a+UID=b,O=x",
			seq(one(utf(oidOrganization, "x")), multi(utf(oidCN, "a"), utf(oidUID, "b"))),
			"CN=a+UID=b,O=x"},
		{"multi-valued RDN keeps written order in String", "UID=b+CN=a",
			seq(multi(utf(oidCN, "a"), utf(oidUID, "b"))), "UID=b+CN=a"},
		{"semicolon separator and spaces", "  cn = a b ;  o = x  , c = DE ",
			seq(one(prt(oidCountry, "DE")), one(utf(oidOrganization, "x")), one(utf(oidCN, "a b"))),
			"CN=a b,O=x,C=DE"},
		{"S alias and ST", "S=Ohio,ST=Texas",
			seq(one(utf(oidState, "Texas")), one(utf(oidState, "Ohio"))), "ST=Ohio,ST=Texas"},
		{"E is IA5String", "E=admin@example.com,CN=x",
			seq(one(utf(oidCN, "x")), one(ia5(oidEmailAddress, "admin@example.com"))), `E=admin@example.com,CN=x`},
		{"emailAddress and DC", "emailAddress=a@b.c,DC=example,DC=com",
			seq(one(ia5(oidDomainComponent, "com")), one(ia5(oidDomainComponent, "example")), one(ia5(oidEmailAddress, "a@b.c"))),
			"E=a@b.c,DC=example,DC=com"},
		{"every escape", `CN=\,\+\"\\\;\<\>\=\#x\ y\ `,
			seq(one(utf(oidCN, `,+"\;<>=#x y `))), `CN=\,\+\"\\\;\<\>\=#x y\ `},
		{"leading hash escaped", `CN=\#1`, seq(one(utf(oidCN, "#1"))), `CN=\#1`},
		{"leading escaped space", `CN=\  a`, seq(one(utf(oidCN, "  a"))), `CN=\  a`},
		{"hex pair UTF-8", `CN=caf\C3\A9`, seq(one(utf(oidCN, "café"))), "CN=café"},
		{"hex pair 3 bytes", `O=\E2\82\AC`, seq(one(utf(oidOrganization, "€"))), "O=€"},
		{"literal UTF-8", "O=Bücher GmbH", seq(one(utf(oidOrganization, "Bücher GmbH"))), "O=Bücher GmbH"},
		{"quoted with escaped quote", `O="say \"hi\", ok"`, seq(one(utf(oidOrganization, `say "hi", ok`))), `O=say \"hi\"\, ok`},
		{"quoted keeps spaces", `O=" a  b "`, seq(one(utf(oidOrganization, " a  b "))), `O=\ a  b\ `},
		{"quoted then spaces then sep", `O="x"  ,C=US`, seq(one(prt(oidCountry, "US")), one(utf(oidOrganization, "x"))), "O=x,C=US"},
		{"unescaped = and # inside value", "CN=a=b#c", seq(one(utf(oidCN, "a=b#c"))), `CN=a\=b#c`},
		{"OID type known", "2.5.4.3=host", seq(one(utf(oidCN, "host"))), "CN=host"},
		{"OID type pseudonym", "2.5.4.65=x", seq(one(utf(oidPseudonym, "x"))), "PSEUDONYM=x"},
		{"OID. prefix", "OID.2.5.4.11=ops", seq(one(utf(oidOrganizationalUnit, "ops"))), "OU=ops"},
		{"unknown OID is UTF8String", "1.2.3=v", seq(one(utf(asn1.ObjectIdentifier{1, 2, 3}, "v"))), "1.2.3=v"},
		{"hex BER UTF8String", "1.2.3=#0C03616263", seq(one(utf(asn1.ObjectIdentifier{1, 2, 3}, "abc"))), "1.2.3=#0C03616263"},
		{"hex PrintableString for CN", "CN=#1303616263", seq(one(prt(oidCN, "abc"))), "CN=#1303616263"},
		{"hex lower case, trailing space", "CN=#0c0161 ,O=x", seq(one(utf(oidOrganization, "x")), one(utf(oidCN, "a"))), "CN=#0C0161,O=x"},
		{"hex BMPString", "CN=#1E0400E90041", seq(one(tv(oidCN, asn1.TagBMPString, "\x00\xe9\x00A"))), "CN=#1E0400E90041"},
		{"hex T61String", "CN=#1402E941", seq(one(tv(oidCN, asn1.TagT61String, "\xe9A"))), "CN=#1402E941"},
		{"hex C PrintableString", "C=#13025553", seq(one(prt(oidCountry, "US"))), "C=#13025553"},
		{"all named types", "CN=c,SN=s,SERIALNUMBER=1,L=l,ST=st,STREET=1 Main St,O=o,OU=ou,T=t,TITLE=t2,POSTALCODE=12345,GIVENNAME=g,G=g2,INITIALS=i,DNQUALIFIER=q,PSEUDONYM=p,UID=u,SURNAME=s2,C=us",
			seq(one(prt(oidCountry, "us")), one(utf(oidSurname, "s2")), one(utf(oidUID, "u")), one(utf(oidPseudonym, "p")),
				one(prt(oidDNQualifier, "q")), one(utf(oidInitials, "i")), one(utf(oidGivenName, "g2")), one(utf(oidGivenName, "g")),
				one(utf(oidPostalCode, "12345")), one(utf(oidTitle, "t2")), one(utf(oidTitle, "t")), one(utf(oidOrganizationalUnit, "ou")),
				one(utf(oidOrganization, "o")), one(utf(oidStreet, "1 Main St")), one(utf(oidState, "st")), one(utf(oidLocality, "l")),
				one(prt(oidSerialNumber, "1")), one(utf(oidSurname, "s")), one(utf(oidCN, "c"))),
			"CN=c,SN=s,SERIALNUMBER=1,L=l,ST=st,STREET=1 Main St,O=o,OU=ou,T=t,T=t2,POSTALCODE=12345,GIVENNAME=g,GIVENNAME=g2,INITIALS=i,DNQUALIFIER=q,PSEUDONYM=p,UID=u,SN=s2,C=us"},
		{"CN at 64 characters", "CN=" + strings.Repeat("é", 64), seq(one(utf(oidCN, strings.Repeat("é", 64)))), "CN=" + strings.Repeat("é", 64)},
		{"serialNumber printable punctuation", "SERIALNUMBER=AB-12/3:4?(5)", seq(one(prt(oidSerialNumber, "AB-12/3:4?(5)"))), `SERIALNUMBER=AB-12/3:4?(5)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dn, err := ParseDN(tt.in)
			if err != nil {
				t.Fatalf("ParseDN(%q): %v", tt.in, err)
			}
			got, err := dn.DER()
			if err != nil {
				t.Fatalf("DER: %v", err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("DER mismatch\n got %s\nwant %s", hex.EncodeToString(got), hex.EncodeToString(tt.want))
			}
			if s := dn.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
			again, err := ParseDN(dn.String())
			if err != nil {
				t.Fatalf("re-parse %q: %v", dn.String(), err)
			}
			if d2, _ := again.DER(); !bytes.Equal(d2, got) {
				t.Errorf("String() does not round-trip: %q", dn.String())
			}
		})
	}
}

func TestParseDNBad(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		pos    int
		attr   string
		reason string // substring of Reason
	}{
		{"empty", "", 0, "", "empty subject"},
		{"only spaces", "   ", 0, "", "empty subject"},
		{"empty value", "CN=", 3, "CN", "empty value"},
		{"empty quoted value", `CN=""`, 3, "CN", "empty value"},
		{"empty value among others", "CN=a,O= ,C=US", 8, "O", "empty value"},
		{"unknown type", "CN=a,FOO=b", 5, "FOO", "unknown attribute type"},
		{"bad OID type", "1.2.03=x", 0, "1.2.03", "unknown attribute type"},
		{"OID first arc > 2", "3.1=x", 0, "3.1", "unknown attribute type"},
		{"missing =", "CN=a,O", 5, "O", "missing '='"},
		{"missing type", "=a", 0, "", "missing attribute type"},
		{"empty RDN", "CN=a,,O=b", 5, "", "empty RDN"},
		{"leading separator", ",CN=a", 0, "", "empty RDN"},
		{"trailing comma", "CN=a,", 4, "", "trailing ','"},
		{"trailing plus", "CN=a+ ", 4, "", "trailing '+'"},
		{"unbalanced quotes", `O="Key Example, Inc.,C=US`, 2, "O", "unbalanced quotes"},
		{"garbage after quote", `O="a"b`, 5, "O", "after quoted value"},
		{"quote inside value", `O=a"b"`, 3, "O", `unexpected '"'`},
		{"bad escape letter", `CN=a\n`, 4, "CN", "bad escape"},
		{"bad escape half hex", `CN=a\4`, 4, "CN", "bad escape"},
		{"backslash at end", `CN=a\`, 4, "CN", "backslash at end"},
		{"unescaped <", "CN=a<b", 4, "CN", "unescaped '<'"},
		{"escaped invalid UTF-8", `CN=\C3\28`, 3, "CN", "not valid UTF-8"},
		{"raw invalid UTF-8", "CN=a\xff", 4, "", "invalid UTF-8"},
		{"NUL via escape", `CN=a\00b`, 3, "CN", "NUL"},
		{"control character", "CN=a\tb", 3, "CN", "control character"},
		{"DEL", "CN=a\x7f", 3, "CN", "control character"},
		{"C three letters", "CN=a,C=USA", 7, "C", "two-letter"},
		{"C digits", "C=12", 2, "C", "two-letter"},
		{"C non-printable", "C=ü1", 2, "C", "PrintableString"},
		{"CN too long", "CN=" + strings.Repeat("a", 65), 3, "CN", "longer than 64"},
		{"O too long", "O=" + strings.Repeat("a", 65), 2, "O", "longer than 64"},
		{"OU too long", "OU=" + strings.Repeat("a", 65), 3, "OU", "longer than 64"},
		{"L too long", "L=" + strings.Repeat("a", 129), 2, "L", "longer than 128"},
		{"ST too long", "ST=" + strings.Repeat("a", 129), 3, "ST", "longer than 128"},
		{"SERIALNUMBER too long", "SERIALNUMBER=" + strings.Repeat("1", 65), 13, "SERIALNUMBER", "longer than 64"},
		{"E too long", "E=" + strings.Repeat("a", 250) + "@b.com", 2, "E", "longer than 255"},
		{"POSTALCODE too long", "POSTALCODE=" + strings.Repeat("1", 41), 11, "POSTALCODE", "longer than 40"},
		{"PSEUDONYM too long", "PSEUDONYM=" + strings.Repeat("p", 129), 10, "PSEUDONYM", "longer than 128"},
		{"T too long", "T=" + strings.Repeat("t", 65), 2, "T", "longer than 64"},
		{"SERIALNUMBER not printable", "SERIALNUMBER=a_b", 13, "SERIALNUMBER", "PrintableString"},
		{"DNQUALIFIER star", "DNQUALIFIER=a*", 12, "DNQUALIFIER", "PrintableString"},
		{"E not ASCII", "E=ü@example.com", 2, "E", "IA5String"},
		{"DC not ASCII", "DC=bücher", 3, "DC", "IA5String"},
		{"hex odd digits", "CN=#0C0", 3, "CN", "even number"},
		{"hex empty", "CN=#", 3, "CN", "even number"},
		{"hex not hex", "CN=#zz", 4, "CN", "must be hex"},
		{"hex octet string", "1.2.3=#0403616263", 6, "1.2.3", "tag 4"},
		{"hex truncated TLV", "CN=#0C05616263", 3, "CN", "well-formed DER"},
		{"hex trailing bytes", "CN=#0C0161FF", 3, "CN", "trailing bytes"},
		{"hex non-minimal length", "CN=#0C8103616263", 3, "CN", "well-formed DER"},
		{"hex constructed", "CN=#2C03616263", 3, "CN", "primitive universal"},
		{"hex UniversalString", "CN=#1C0400000041", 3, "CN", "tag 28"},
		{"hex C as UTF8String", "C=#0C025553", 2, "C", "must be a PrintableString"},
		{"hex UTF8String invalid", "CN=#0C01FF", 3, "CN", "not valid UTF-8"},
		{"hex empty string", "CN=#0C00", 3, "CN", "empty value"},
		{"duplicate AVA in RDN", "CN=a+CN=a", 8, "CN", "duplicate"},
		{"subject too long", "CN=a,GIVENNAME=" + strings.Repeat("g", MaxDNLength), MaxDNLength, "", "longer than 65536 bytes"},
		{"space inside type", "C N=a", 0, "C N", "unknown attribute type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDN(tt.in)
			if err == nil {
				t.Fatalf("ParseDN(%q) succeeded", tt.in)
			}
			if !errors.Is(err, ErrInvalidDN) {
				t.Errorf("errors.Is(err, ErrInvalidDN) = false for %v", err)
			}
			var de *DNError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not *DNError", err)
			}
			if de.Pos != tt.pos || de.Attr != tt.attr || !strings.Contains(de.Reason, tt.reason) {
				t.Errorf("got {Pos:%d Attr:%q Reason:%q}, want {Pos:%d Attr:%q Reason~%q}", de.Pos, de.Attr, de.Reason, tt.pos, tt.attr, tt.reason)
			}
			if !strings.HasPrefix(err.Error(), "csr: subject: ") {
				t.Errorf("message %q lacks prefix", err)
			}
		})
	}
}

func TestDNErrorMessage(t *testing.T) {
	_, err := ParseDN("CN=" + strings.Repeat("x", 65))
	want := "csr: subject: CN at position 3: value longer than 64 characters"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}

func TestDNValues(t *testing.T) {
	dn, err := ParseDN("CN=a+UID=u,OU=x,OU=y,S=Ohio,2.5.4.65=p")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		attr string
		want []string
	}{
		{"CN", []string{"a"}},
		{"ou", []string{"x", "y"}},
		{"ST", []string{"Ohio"}},
		{"s", []string{"Ohio"}},
		{"2.5.4.8", []string{"Ohio"}},
		{"PSEUDONYM", []string{"p"}},
		{"UID", []string{"u"}},
		{"O", nil},
		{"NOPE", nil},
	}
	for _, tt := range tests {
		t.Run(tt.attr, func(t *testing.T) {
			got := dn.Values(tt.attr)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Errorf("Values(%q) = %q, want %q", tt.attr, got, tt.want)
			}
		})
	}
}

func TestDNWith(t *testing.T) {
	base, err := ParseDN("CN=host")
	if err != nil {
		t.Fatal(err)
	}
	dn, err := base.With("O", "Key Example, Inc.")
	if err != nil {
		t.Fatal(err)
	}
	dn, err = dn.With("c", "US")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dn.String(), `CN=host,O=Key Example\, Inc.,C=US`; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if len(base) != 1 {
		t.Errorf("With modified its receiver: %v", base)
	}
	der, _ := dn.DER()
	want := seq(one(prt(oidCountry, "US")), one(utf(oidOrganization, "Key Example, Inc.")), one(utf(oidCN, "host")))
	if !bytes.Equal(der, want) {
		t.Errorf("DER = %x, want %x", der, want)
	}

	bad := []struct{ attr, value, reason string }{
		{"C", "USA", "two-letter"},
		{"XX", "v", "unknown attribute type"},
		{"CN", "", "empty value"},
		{"O", "a\x00", "NUL"},
	}
	for _, tt := range bad {
		t.Run(tt.attr+"="+tt.value, func(t *testing.T) {
			_, err := base.With(tt.attr, tt.value)
			var de *DNError
			if !errors.As(err, &de) || de.Pos != -1 || !strings.Contains(de.Reason, tt.reason) {
				t.Fatalf("With(%q, %q) = %v, want DNError ~%q", tt.attr, tt.value, err, tt.reason)
			}
		})
	}
}

func TestDNDERConstructed(t *testing.T) {
	// DNs built in code rather than parsed: Tag 0 means the type's default.
	dn := DN{{{Type: oidCountry, Value: "US"}}, {{Type: oidCN, Value: "x", Tag: asn1.TagBMPString}}}
	der, err := dn.DER()
	if err != nil {
		t.Fatal(err)
	}
	want := seq(one(tv(oidCN, asn1.TagBMPString, "\x00x")), one(prt(oidCountry, "US")))
	if !bytes.Equal(der, want) {
		t.Errorf("DER = %x, want %x", der, want)
	}
	if _, err := (DN{{}}).DER(); !errors.Is(err, ErrInvalidDN) {
		t.Errorf("empty RDN: err = %v", err)
	}
	if _, err := (DN{{{Type: oidCN, Value: "x", Tag: 99}}}).DER(); !errors.Is(err, ErrInvalidDN) {
		t.Errorf("bad tag: err = %v", err)
	}
	if der, err := DN(nil).DER(); err != nil || !bytes.Equal(der, []byte{0x30, 0}) {
		t.Errorf("empty DN DER = %x, %v", der, err)
	}
}
