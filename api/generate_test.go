package api_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/store"
)

// atv is one expected attribute of the subject, built independently of the
// csr package so the test checks the DER, not the code against itself.
type atv struct {
	oid asn1.ObjectIdentifier
	tag int
	val string
}

var (
	oidCN     = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidC      = asn1.ObjectIdentifier{2, 5, 4, 6}
	oidL      = asn1.ObjectIdentifier{2, 5, 4, 7}
	oidST     = asn1.ObjectIdentifier{2, 5, 4, 8}
	oidO      = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidOU     = asn1.ObjectIdentifier{2, 5, 4, 11}
	oidUID    = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}
	oidDC     = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
	oidE      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
	oidSerial = asn1.ObjectIdentifier{2, 5, 4, 5}
	oidPseudo = asn1.ObjectIdentifier{2, 5, 4, 65}
	oidUPN    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}
)

const (
	utf8T  = asn1.TagUTF8String
	printT = asn1.TagPrintableString
	ia5T   = asn1.TagIA5String
)

// subjectDER encodes RDNs given in DER order (least specific first); each
// multi-valued RDN must already be listed in DER SET order.
func subjectDER(t *testing.T, rdns [][]atv) []byte {
	t.Helper()
	var seq []byte
	for _, rdn := range rdns {
		var set []byte
		for _, a := range rdn {
			oid, err := asn1.Marshal(a.oid)
			if err != nil {
				t.Fatal(err)
			}
			val, err := asn1.Marshal(asn1.RawValue{Tag: a.tag, Bytes: []byte(a.val)})
			if err != nil {
				t.Fatal(err)
			}
			av, _ := asn1.Marshal(asn1.RawValue{Class: 0, Tag: asn1.TagSequence, IsCompound: true, Bytes: append(oid, val...)})
			set = append(set, av...)
		}
		s, _ := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSet, IsCompound: true, Bytes: set})
		seq = append(seq, s...)
	}
	out, _ := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: seq})
	return out
}

const keyfactorExample = `CN=websrvr14.keyexample.com,OU=IT,O="Key Example, Inc.",L=Independence,ST=OH,C=US`

var keyfactorExampleRDNs = [][]atv{
	{{oidC, printT, "US"}}, {{oidST, utf8T, "OH"}}, {{oidL, utf8T, "Independence"}},
	{{oidO, utf8T, "Key Example, Inc."}}, {{oidOU, utf8T, "IT"}}, {{oidCN, utf8T, "websrvr14.keyexample.com"}},
}

// send makes a request with Keyfactor's headers; hdr entries override them
// and an empty value removes a header.
func send(t *testing.T, method, path, contentType, body string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, testSrv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

const generatePath = "/KeyfactorAPI/CSRGeneration/Generate"

type wantSANs struct {
	dns    []string
	ips    []string
	uris   []string
	emails []string
	upns   []string
	rids   []asn1.ObjectIdentifier
}

func TestGenerateGood(t *testing.T) {
	cases := []struct {
		name     string
		path     string
		ctype    string
		body     string
		subject  [][]atv
		sans     wantSANs
		keyType  string
		keyBits  int
		curveOID string
		slow     bool // -short skips it
	}{
		{
			name:    "keyfactor example ECC 256",
			body:    `{"Subject":` + jsonString(keyfactorExample) + `,"KeyType":"ECC","KeyLength":256,"SANs":{"dns":["websrvr14.keyexample.com"],"ip4":["192.168.12.14"]}}`,
			subject: keyfactorExampleRDNs, keyType: "ECC", keyBits: 256,
			sans: wantSANs{dns: []string{"websrvr14.keyexample.com"}, ips: []string{"192.168.12.14"}},
		},
		{
			name:    "ECC P-384 by curve OID",
			body:    `{"Subject":"CN=p384.example.com","KeyType":"ECC","Curve":"1.3.132.0.34"}`,
			subject: [][]atv{{{oidCN, utf8T, "p384.example.com"}}}, keyType: "ECC", keyBits: 384,
		},
		{
			name:    "ECC P-521 by curve name with matching length",
			body:    `{"Subject":"CN=p521.example.com","KeyType":"ecdsa","KeyLength":521,"Curve":"secp521r1"}`,
			subject: [][]atv{{{oidCN, utf8T, "p521.example.com"}}}, keyType: "ECC", keyBits: 521,
		},
		{
			name:    "ECC P-256 by curve OID",
			body:    `{"Subject":"CN=p256.example.com","KeyType":"ECC","Curve":"1.2.840.10045.3.1.7"}`,
			subject: [][]atv{{{oidCN, utf8T, "p256.example.com"}}}, keyType: "ECC", keyBits: 256,
		},
		{
			name:    "ED25519 without KeyLength",
			body:    `{"Subject":"CN=ed.example.com","KeyType":"ED25519","SANs":{"dns":["ed.example.com"]}}`,
			subject: [][]atv{{{oidCN, utf8T, "ed.example.com"}}}, keyType: "ED25519", keyBits: 255,
			sans: wantSANs{dns: []string{"ed.example.com"}},
		},
		{
			name:    "Ed25519 with KeyLength 255",
			body:    `{"Subject":"CN=ed255.example.com","KeyType":"Ed25519","KeyLength":255}`,
			subject: [][]atv{{{oidCN, utf8T, "ed255.example.com"}}}, keyType: "ED25519", keyBits: 255,
		},
		{
			name:    "RSA 2048 with multi-valued RDN",
			body:    `{"Subject":"CN=a+UID=b,O=x","KeyType":"RSA","KeyLength":2048}`,
			subject: [][]atv{{{oidO, utf8T, "x"}}, {{oidCN, utf8T, "a"}, {oidUID, utf8T, "b"}}}, keyType: "RSA", keyBits: 2048,
		},
		{
			name:    "RSA 3072 with escapes",
			body:    `{"Subject":` + jsonString(`CN=Smith\, John,OU=R\+D,O=Acme \"Q\" \\ Co,L=Z\C3\BCrich`) + `,"KeyType":"RSA","KeyLength":3072}`,
			subject: [][]atv{{{oidL, utf8T, "Zürich"}}, {{oidO, utf8T, `Acme "Q" \ Co`}}, {{oidOU, utf8T, "R+D"}}, {{oidCN, utf8T, "Smith, John"}}},
			keyType: "RSA", keyBits: 3072,
		},
		{
			name: "RSA 4096 with OIDs, DC, E and serial",
			body: `{"Subject":` + jsonString(`CN=dev01,2.5.4.65=pseudo,1.2.3.4=#0C03616263,SERIALNUMBER=A123,E=ops@example.com,DC=example,DC=com`) + `,"KeyType":"RSA","KeyLength":4096}`,
			subject: [][]atv{
				{{oidDC, ia5T, "com"}}, {{oidDC, ia5T, "example"}}, {{oidE, ia5T, "ops@example.com"}}, {{oidSerial, printT, "A123"}},
				{{asn1.ObjectIdentifier{1, 2, 3, 4}, utf8T, "abc"}}, {{oidPseudo, utf8T, "pseudo"}}, {{oidCN, utf8T, "dev01"}},
			},
			keyType: "RSA", keyBits: 4096,
		},
		{
			// SoftHSM needs 10-60 s for this one; it runs in parallel.
			name:    "RSA 8192",
			body:    `{"Subject":"CN=rsa8192.example.com","KeyType":"RSA","KeyLength":8192}`,
			subject: [][]atv{{{oidCN, utf8T, "rsa8192.example.com"}}}, keyType: "RSA", keyBits: 8192,
			slow: true,
		},
		{
			name: "every SAN type, camelCase names, text/json, lower-case base path",
			path: "/keyfactorapi/csrgeneration/generate", ctype: "text/json; charset=utf-8",
			body: `{"subject":"CN=all.example.com","keyType":"ecc","keyLength":256,"saNs":{` +
				`"DNS":["all.example.com","*.wild.example.com","bücher.example","all.example.com"],` +
				`"ip4":["10.0.0.1"],"ip6":["2001:db8::1"],"ip":["192.0.2.7"],"uri":["https://all.example.com/x"],` +
				`"rfc822":["a@example.com"],"email":["b@example.com"],"ms_ntprincipalname":["host$@corp.example"],"upn":["u@corp.example"],` +
				`"registeredid":["1.2.3.4.5"]}}`,
			subject: [][]atv{{{oidCN, utf8T, "all.example.com"}}}, keyType: "ECC", keyBits: 256,
			sans: wantSANs{
				dns: []string{"all.example.com", "*.wild.example.com", "xn--bcher-kva.example"},
				// Within a SAN type, values keep their order; keys that
				// share a type (ip, ip4, ip6; email, rfc822) are merged in
				// key order, since a JSON object's key order is not kept.
				ips:    []string{"192.0.2.7", "10.0.0.1", "2001:db8::1"},
				uris:   []string{"https://all.example.com/x"},
				emails: []string{"b@example.com", "a@example.com"},
				upns:   []string{"host$@corp.example", "u@corp.example"},
				rids:   []asn1.ObjectIdentifier{{1, 2, 3, 4, 5}},
			},
		},
		{
			name: "application/*+json and Api-Version 1.0",
			path: "/KeyfactorApi/CSRGeneration/Generate", ctype: "application/vnd.keyfactor+json",
			body:    `{"Subject":"CN=vnd.example.com, O = Spaced Org ","KeyType":"ECC","KeyLength":384,"Template":"WebServer"}`,
			subject: [][]atv{{{oidO, utf8T, "Spaced Org"}}, {{oidCN, utf8T, "vnd.example.com"}}}, keyType: "ECC", keyBits: 384,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.slow && testing.Short() {
				t.Skip("RSA-8192 key generation takes SoftHSM 10-60 s, skipped by -short; the full run covers the largest RSA size end to end")
			}
			t.Parallel()
			path := tc.path
			if path == "" {
				path = generatePath
			}
			ctype := tc.ctype
			if ctype == "" {
				ctype = "application/json"
			}
			resp := send(t, http.MethodPost, path, ctype, tc.body, map[string]string{"X-Keyfactor-Api-Version": "1.0"})
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, raw)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.Contains(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			var body map[string]any
			if err := json.Unmarshal(raw, &body); err != nil || len(body) != 1 {
				t.Fatalf("body must be exactly {\"CSR\":...}: %s", raw)
			}
			pemText, _ := body["CSR"].(string)
			block, rest := pem.Decode([]byte(pemText))
			if block == nil || block.Type != "CERTIFICATE REQUEST" || len(bytes.TrimSpace(rest)) != 0 {
				t.Fatalf("CSR is not one PEM CERTIFICATE REQUEST: %q", pemText)
			}
			req, err := x509.ParseCertificateRequest(block.Bytes)
			if err != nil {
				t.Fatalf("parse CSR: %v", err)
			}
			if err := req.CheckSignature(); err != nil {
				t.Fatalf("CSR signature: %v", err)
			}
			opensslVerify(t, pemText)
			if want := subjectDER(t, tc.subject); !bytes.Equal(req.RawSubject, want) {
				t.Errorf("subject DER\n got %x\nwant %x", req.RawSubject, want)
			}
			checkSANs(t, req, tc.sans)

			// The record, the token's key objects and the CSR agree.
			loc := resp.Header.Get("Location")
			id, err := strconv.ParseInt(loc[strings.LastIndex(loc, "/")+1:], 10, 64)
			if err != nil || !strings.HasPrefix(loc, "/KeyfactorAPI/CSRGeneration/Pending/") {
				t.Fatalf("Location %q", loc)
			}
			rec, err := testStore.Get(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if rec.State != store.StatePending || rec.CSRPEM != pemText || rec.KeyType != tc.keyType || rec.KeySize != tc.keyBits {
				t.Errorf("record: state %s type %s size %d", rec.State, rec.KeyType, rec.KeySize)
			}
			if len(rec.KeyID) != 16 || rec.KeyLabel != "csrd-"+strconv.FormatInt(id, 10) || rec.TokenLabel != testToken.Label() {
				t.Errorf("record key ref: id %x label %q token %q", rec.KeyID, rec.KeyLabel, rec.TokenLabel)
			}
			ref := hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}
			key, err := testToken.FindKey(context.Background(), ref)
			if err != nil {
				t.Fatalf("key not in token: %v", err)
			}
			if !reflect.DeepEqual(key.Public(), req.PublicKey) {
				t.Errorf("CSR public key differs from the token's public key")
			}
			attrs, err := testToken.KeyAttributes(context.Background(), ref)
			if err != nil {
				t.Fatal(err)
			}
			if !attrs.Sensitive || attrs.Extractable || !attrs.NeverExtractable || !attrs.AlwaysSensitive ||
				!attrs.Sign || attrs.Decrypt || attrs.Unwrap || attrs.Derive || !attrs.Token || !attrs.Private {
				t.Errorf("private key attributes %+v", attrs)
			}
		})
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func opensslVerify(t *testing.T, pemText string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "req.pem")
	if err := os.WriteFile(f, []byte(pemText), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "req", "-verify", "-noout", "-in", f).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "verify OK") {
		t.Fatalf("openssl req -verify: %v: %s", err, out)
	}
}

func checkSANs(t *testing.T, req *x509.CertificateRequest, want wantSANs) {
	t.Helper()
	var ips []string
	for _, ip := range req.IPAddresses {
		ips = append(ips, ip.String())
	}
	var uris []string
	for _, u := range req.URIs {
		uris = append(uris, u.String())
	}
	eq := func(what string, got, want []string) {
		if len(got) == 0 && len(want) == 0 {
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %q want %q", what, got, want)
		}
	}
	eq("DNS", req.DNSNames, want.dns)
	eq("IP", ips, want.ips)
	eq("URI", uris, want.uris)
	eq("email", req.EmailAddresses, want.emails)
	upns, rids := otherSANs(t, req)
	eq("UPN", upns, want.upns)
	if len(rids) != 0 || len(want.rids) != 0 {
		if !reflect.DeepEqual(rids, want.rids) {
			t.Errorf("registeredID: got %v want %v", rids, want.rids)
		}
	}
}

// otherSANs reads the otherName UPNs and registeredIDs that crypto/x509
// does not expose.
func otherSANs(t *testing.T, req *x509.CertificateRequest) (upns []string, rids []asn1.ObjectIdentifier) {
	t.Helper()
	for _, ext := range req.Extensions {
		if !ext.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) {
			continue
		}
		var names asn1.RawValue
		if _, err := asn1.Unmarshal(ext.Value, &names); err != nil {
			t.Fatal(err)
		}
		rest := names.Bytes
		for len(rest) > 0 {
			var gn asn1.RawValue
			var err error
			if rest, err = asn1.Unmarshal(rest, &gn); err != nil {
				t.Fatal(err)
			}
			switch gn.Tag {
			case 0: // otherName
				var on struct {
					Type  asn1.ObjectIdentifier
					Value asn1.RawValue // [0] EXPLICIT wrapper
				}
				if _, err := asn1.UnmarshalWithParams(gn.FullBytes, &on, "tag:0"); err != nil {
					t.Fatalf("otherName: %v", err)
				}
				var inner asn1.RawValue
				if on.Value.Class != asn1.ClassContextSpecific || on.Value.Tag != 0 {
					t.Fatalf("otherName value is not [0] EXPLICIT: class %d tag %d", on.Value.Class, on.Value.Tag)
				}
				if _, err := asn1.Unmarshal(on.Value.Bytes, &inner); err != nil {
					t.Fatal(err)
				}
				if !on.Type.Equal(oidUPN) || inner.Tag != asn1.TagUTF8String {
					t.Fatalf("otherName type %v inner tag %d", on.Type, inner.Tag)
				}
				upns = append(upns, string(inner.Bytes))
			case 8: // registeredID, implicit OID
				oidDER := append([]byte{asn1.TagOID, byte(len(gn.Bytes))}, gn.Bytes...)
				var oid asn1.ObjectIdentifier
				if _, err := asn1.Unmarshal(oidDER, &oid); err != nil {
					t.Fatal(err)
				}
				rids = append(rids, oid)
			}
		}
	}
	return upns, rids
}

// TestGenerateConcurrent fires 16 requests at once: all succeed, each with
// its own record, label and CKA_ID.
func TestGenerateConcurrent(t *testing.T) {
	const n = 16
	var wg sync.WaitGroup
	locs := make([]string, n)
	errs := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := `{"Subject":"CN=c` + strconv.Itoa(i) + `.example.com","KeyType":"ECC","KeyLength":256}`
			req, _ := http.NewRequest(http.MethodPost, testSrv.URL+generatePath, strings.NewReader(body))
			req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs[i] = err.Error()
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(resp.Body)
				errs[i] = strconv.Itoa(resp.StatusCode) + " " + string(b)
			}
			locs[i] = resp.Header.Get("Location")
		}()
	}
	wg.Wait()
	labels := map[string]bool{}
	keyIDs := map[string]bool{}
	for i := range n {
		if errs[i] != "" {
			t.Fatalf("request %d: %s", i, errs[i])
		}
		id, _ := strconv.ParseInt(locs[i][strings.LastIndex(locs[i], "/")+1:], 10, 64)
		rec, err := testStore.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		labels[rec.KeyLabel] = true
		keyIDs[string(rec.KeyID)] = true
	}
	if len(labels) != n || len(keyIDs) != n {
		t.Fatalf("want %d distinct labels and CKA_IDs, got %d and %d", n, len(labels), len(keyIDs))
	}
}
