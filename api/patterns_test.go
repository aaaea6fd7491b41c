package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/csr"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
)

// The policy tests run a second server on the same token and database,
// deciding with testdata/policy.yaml instead of the built-in default.
var (
	policyOnce sync.Once
	policySrv  *httptest.Server
	policyPol  *policy.Reloader
	policySHA  string
)

const policyFile = "testdata/policy.yaml"

func policyServer(t *testing.T) string {
	t.Helper()
	policyOnce.Do(func() {
		data, err := os.ReadFile(policyFile)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		policySHA = hex.EncodeToString(sum[:])
		e, err := policy.Parse(data, policyFile, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		policyPol = policy.NewReloader(e)
		log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel)
		svc := lifecycle.New(lifecycle.HSMToken{Token: testToken}, testStore, policyPol, log)
		policySrv = httptest.NewServer(api.New(api.Options{BasePath: "/KeyfactorAPI", Log: log, Generator: svc, Policy: policyPol,
			NoAuth: true, Audit: testStore}))
	})
	if policySrv == nil {
		t.Fatal("policy server did not start")
	}
	return policySrv.URL
}

func postJSON(t *testing.T, base, path, body string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
	req.Header.Set("Content-Type", "application/json")
	return do(t, req)
}

func getJSON(t *testing.T, base, path string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
	code, body, _ := do(t, req)
	return code, body
}

func do(t *testing.T, req *http.Request) (int, []byte, http.Header) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, resp.Header
}

// gen builds a Generate body; extra is appended inside the object.
func gen(subject, keyType string, keyLength int, extra string) string {
	b := `{"Subject":` + jsonString(subject) + `,"KeyType":"` + keyType + `"`
	if keyLength != 0 {
		b += `,"KeyLength":` + strconv.Itoa(keyLength)
	}
	return b + extra + `}`
}

const (
	webSANs = `,"SANs":{"dns":["www.example.com"]}`
	pat3    = `,"EnrollmentPatternId":3`
)

type policyCase struct {
	name string
	body string
	// Refusals: ErrorCode and substrings of Message, in order.
	code string
	msgs []string
	// Successes: the deciding pattern, how it was found, the exact subject
	// (DER order) and the defaults the decision says it applied.
	pattern    int
	resolvedBy string
	subject    [][]atv
	defaults   []string
}

func cn(v string) []atv { return []atv{{oidCN, utf8T, v}} }

var (
	cUS      = []atv{{oidC, printT, "US"}}
	lBerlin  = []atv{{oidL, utf8T, "Berlin"}}
	oExample = []atv{{oidO, utf8T, "Example Inc."}}
)

func policyCases() []policyCase {
	const ok1 = `,"SANs":{"dns":["a.example.com"]}`
	return []policyCase{
		// Which pattern decides.
		{name: "neither pattern nor template: the default pattern", body: gen("CN=a.example.com", "ECC", 256, ok1),
			pattern: 1, resolvedBy: "default", subject: [][]atv{cUS, cn("a.example.com")}, defaults: []string{"C=US"}},
		{name: "template alone: its default pattern", body: gen("CN=www.example.com,OU=IT", "ECC", 256, webSANs+`,"Template":"WebServer"`),
			pattern: 3, resolvedBy: "Template", subject: [][]atv{cUS, lBerlin, oExample, {{oidOU, utf8T, "IT"}}, cn("www.example.com")},
			defaults: []string{"O=Example Inc.", "L=Berlin", "C=US"}},
		{name: "template by OID", body: gen("CN=www.example.com", "ECC", 256, webSANs+`,"Template":"1.3.6.1.4.1.311.21.8.1.2"`),
			pattern: 3, resolvedBy: "Template", subject: [][]atv{cUS, lBerlin, oExample, cn("www.example.com")}},
		{name: "EnrollmentPatternId wins over the default", body: gen("CN=no-sans", "ECC", 384, `,"EnrollmentPatternId":5`),
			pattern: 5, resolvedBy: "EnrollmentPatternId", subject: [][]atv{cUS, cn("no-sans")}},
		{name: "EnrollmentPatternId with its own template, any case", body: gen("CN=www.example.com", "ECC", 256, webSANs+pat3+`,"Template":"webserver"`),
			pattern: 3, resolvedBy: "EnrollmentPatternId"},
		{name: "EnrollmentPatternId and another template", body: gen("CN=www.example.com", "ECC", 256, webSANs+pat3+`,"Template":"Mail"`),
			code: api.CodePolicy, msgs: []string{`Template "Mail" does not match enrollment pattern 3 ("Web Server"), whose template is "WebServer"`}},
		{name: "template on a pattern without one", body: gen("CN=a.example.com", "ECC", 256, ok1+`,"EnrollmentPatternId":1,"Template":"WebServer"`),
			code: api.CodePolicy, msgs: []string{`does not match enrollment pattern 1 ("General"), which is not tied to a template`}},
		{name: "unknown pattern id", body: gen("CN=a.example.com", "ECC", 256, ok1+`,"EnrollmentPatternId":99`),
			code: api.CodePolicy, msgs: []string{"EnrollmentPatternId 99 is not a configured enrollment pattern"}},
		{name: "unknown template", body: gen("CN=a.example.com", "ECC", 256, ok1+`,"Template":"Nope"`),
			code: api.CodePolicy, msgs: []string{`Template "Nope" is not a configured template`}},
		{name: "template without a pattern", body: gen("CN=a.example.com", "ECC", 256, ok1+`,"Template":"Orphan"`),
			code: api.CodePolicy, msgs: []string{`Template "Orphan" has no enrollment pattern`}},
		{name: "CSR Generation bit unset", body: gen("CN=www.example.com", "ECC", 256, webSANs+`,"EnrollmentPatternId":4`),
			code: api.CodePolicy, msgs: []string{`enrollment pattern 4 ("PFX only") does not allow CSR Generation (AllowedEnrollmentTypes 3)`}},

		// Key rules: type, size, curve, alternative, and who refused.
		{name: "key type refused by the pattern", body: gen("CN=x", "RSA", 3072, `,"EnrollmentPatternId":5`),
			code: api.CodePolicy, msgs: []string{`KeyType RSA is not allowed by enrollment pattern 5 ("No RFC"): key types allowed are ECC`}},
		{name: "key type refused system-wide", body: gen("CN=a.example.com", "ED448", 0, ok1),
			code: api.CodePolicy, msgs: []string{`KeyType ED448 is not allowed by enrollment pattern 1 ("General") (the system-wide policy does not allow it): key types allowed are RSA, ECC, ED25519`}},
		{name: "RSA size refused by the pattern", body: gen("CN=www.example.com", "RSA", 2048, webSANs+pat3),
			code: api.CodePolicy, msgs: []string{`KeyLength 2048 is not allowed by enrollment pattern 3 ("Web Server"): RSA sizes allowed are 3072, 4096`}},
		{name: "RSA size refused system-wide", body: gen("CN=a.example.com", "RSA", 8192, ok1),
			code: api.CodePolicy, msgs: []string{`KeyLength 8192 is not allowed by enrollment pattern 1 ("General") (the system-wide policy does not allow it): RSA sizes allowed are 2048, 3072, 4096`}},
		{name: "RSA below the pattern's minimum", body: gen("CN=bob,E=bob@example.com", "RSA", 2048, `,"Template":"Mail"`),
			code: api.CodePolicy, msgs: []string{`KeyLength 2048 is not allowed by enrollment pattern 6 ("Mail") (below its minimum RSA size 3072): RSA sizes allowed are 3072, 4096`}},
		{name: "RSA size in every rule", body: gen("CN=www.example.com", "RSA", 3072, webSANs+pat3),
			pattern: 3, resolvedBy: "EnrollmentPatternId"},
		{name: "curve refused by the template's CA", body: gen("CN=www.example.com", "ECC", 384, webSANs+pat3),
			code: api.CodePolicy, msgs: []string{`Curve P-384 is not allowed by enrollment pattern 3 ("Web Server") (the CA of template "WebServer" does not support it): ECC curves allowed are P-256`}},
		{name: "curve refused system-wide", body: gen("CN=a.example.com", "ECC", 0, ok1+`,"Curve":"1.3.132.0.35"`),
			code: api.CodePolicy, msgs: []string{`Curve P-521 is not allowed by enrollment pattern 1 ("General") (the system-wide policy does not allow it): ECC curves allowed are P-256, P-384`}},
		{name: "curve refused by the pattern", body: gen("CN=x", "ECC", 256, `,"EnrollmentPatternId":5`),
			code: api.CodePolicy, msgs: []string{`Curve P-256 is not allowed by enrollment pattern 5 ("No RFC"): ECC curves allowed are P-384`}},
		{name: "alternative refused system-wide", body: gen("CN=a.example.com", "ECC", 256, ok1+`,"AlternativeKeyType":"ML-DSA-87"`),
			code: api.CodePolicy, msgs: []string{`AlternativeKeyType ML-DSA-87 is not allowed by enrollment pattern 1 ("General") (the system-wide policy does not allow it): alternative key types allowed are ML-DSA-44, ML-DSA-65`}},
		{name: "alternative refused by the pattern", body: gen("CN=x", "ECC", 384, `,"EnrollmentPatternId":5,"AlternativeKeyType":"ML-DSA-44"`),
			code: api.CodePolicy, msgs: []string{`AlternativeKeyType ML-DSA-44 is not allowed by enrollment pattern 5 ("No RFC"): no alternative key is allowed`}},
		{name: "alternative refused by the template's CA", body: gen("CN=www.example.com", "ECC", 256, webSANs+pat3+`,"AlternativeKeyType":"ML-DSA-44"`),
			code: api.CodePolicy, msgs: []string{`AlternativeKeyType ML-DSA-44 is not allowed by enrollment pattern 3 ("Web Server") (the CA of template "WebServer" does not support it): alternative key types allowed are ML-DSA-65`}},

		// Regexes, per subject attribute and per SAN type.
		{name: "every SAN type matching its regex", body: gen("CN=www.example.com,OU=Ops,O=Example", "ECC", 256, pat3+
			`,"SANs":{"dns":["www.example.com"],"ip4":["10.1.2.3"],"ip6":["2001:db8::7"],"uri":["https://www.example.com/x"],`+
			`"rfc822":["web.master@example.com"],"upn":["web01$@corp.example.com"],"registeredid":["1.3.6.1.4.1.99999.1"]}`),
			pattern: 3, resolvedBy: "EnrollmentPatternId",
			subject:  [][]atv{cUS, lBerlin, {{oidO, utf8T, "Example"}}, {{oidOU, utf8T, "Ops"}}, cn("www.example.com")},
			defaults: []string{"L=Berlin", "C=US"}},
		{name: "CN regex", body: gen("CN=web_1.example.com", "ECC", 256, webSANs+pat3),
			code: api.CodePolicy, msgs: []string{`CN "web_1.example.com" does not match the regex ^[a-z0-9-]+\.example\.com$ of enrollment pattern 3 ("Web Server")`}},
		{name: "O regex", body: gen("CN=www.example.com,O=Evil Corp", "ECC", 256, webSANs+pat3),
			code: api.CodePolicy, msgs: []string{`O "Evil Corp" does not match the regex`}},
		{name: "OU regex with its Error text", body: gen("CN=www.example.com,OU=Sales", "ECC", 256, webSANs+pat3),
			code: api.CodePolicy, msgs: []string{`OU "Sales" is refused by enrollment pattern 3 ("Web Server"): OU must be IT or Ops`}},
		{name: "C regex system-wide", body: gen("CN=a.example.com,C=FR", "ECC", 256, ok1),
			code: api.CodePolicy, msgs: []string{`C "FR" does not match the regex ^(US|DE)$ of enrollment pattern 1 ("General")`}},
		{name: "E regex, case-insensitive pass", body: gen("CN=Bob,E=Bob.Smith@Example.com", "ECC", 256, `,"Template":"Mail"`),
			pattern: 6, resolvedBy: "Template", subject: [][]atv{cUS, {{oidE, ia5T, "Bob.Smith@Example.com"}}, cn("Bob")}},
		{name: "E regex", body: gen("CN=Bob,E=bob@evil.example", "ECC", 256, `,"Template":"Mail"`),
			code: api.CodePolicy, msgs: []string{`E "bob@evil.example" does not match the regex`}},
		{name: "dns regex with its Error text", body: gen("CN=www.example.com", "ECC", 256, pat3+`,"SANs":{"dns":["www.example.com","www.example.org"]}`),
			code: api.CodePolicy, msgs: []string{`dns "www.example.org" is refused by enrollment pattern 3 ("Web Server"): dns names must be under example.com`}},
		{name: "ip4 regex", body: gen("CN=www.example.com", "ECC", 256, pat3+`,"SANs":{"dns":["www.example.com"],"ip4":["192.168.1.1"]}`),
			code: api.CodePolicy, msgs: []string{`ip4 "192.168.1.1" does not match the regex`}},
		{name: "ip6 regex", body: gen("CN=www.example.com", "ECC", 256, pat3+`,"SANs":{"dns":["www.example.com"],"ip6":["2001:db9::1"]}`),
			code: api.CodePolicy, msgs: []string{`ip6 "2001:db9::1" does not match the regex`}},
		{name: "uri regex", body: gen("CN=www.example.com", "ECC", 256, pat3+`,"SANs":{"dns":["www.example.com"],"uri":["http://www.example.com/"]}`),
			code: api.CodePolicy, msgs: []string{`uri "http://www.example.com/" does not match the regex`}},
		{name: "rfc822 regex", body: gen("CN=www.example.com", "ECC", 256, pat3+`,"SANs":{"dns":["www.example.com"],"email":["a@evil.example"]}`),
			code: api.CodePolicy, msgs: []string{`rfc822 "a@evil.example" does not match the regex`}},
		{name: "UPN regex", body: gen("CN=www.example.com", "ECC", 256, pat3+`,"SANs":{"dns":["www.example.com"],"ms_ntprincipalname":["x@other.example"]}`),
			code: api.CodePolicy, msgs: []string{`ms_ntprincipalname "x@other.example" does not match the regex`}},
		{name: "registeredid regex", body: gen("CN=www.example.com", "ECC", 256, pat3+`,"SANs":{"dns":["www.example.com"],"registeredid":["1.2.3.4"]}`),
			code: api.CodePolicy, msgs: []string{`registeredid "1.2.3.4" does not match the regex`}},

		// Wildcards.
		{name: "wildcard dns refused", body: gen("CN=a.example.com", "ECC", 256, `,"SANs":{"dns":["a.example.com","*.example.com"]}`),
			code: api.CodePolicy, msgs: []string{`wildcard dns SAN "*.example.com" is not allowed by enrollment pattern 1 ("General") (AllowWildcards is off)`}},
		{name: "wildcard CN refused", body: gen("CN=*.example.com", "ECC", 256, `,"SANs":{"dns":["a.example.com"]}`),
			code: api.CodePolicy, msgs: []string{`wildcard CN "*.example.com" is not allowed`}},
		{name: "wildcard dns allowed by the pattern", body: gen("CN=www.example.com", "ECC", 256, pat3+`,"SANs":{"dns":["www.example.com","*.web.example.com"]}`),
			pattern: 3, resolvedBy: "EnrollmentPatternId"},

		// RFCEnforcement and the SAN limit.
		{name: "RFC: no dns SAN", body: gen("CN=a.example.com", "ECC", 256, `,"SANs":{"ip4":["10.0.0.1"]}`),
			code: api.CodePolicy, msgs: []string{`enrollment pattern 1 ("General") requires at least one dns SAN (RFCEnforcement)`}},
		{name: "RFC: host-name CN missing from the dns SANs", body: gen("CN=A.Example.com", "ECC", 256, `,"SANs":{"dns":["b.example.com"]}`),
			code: api.CodePolicy, msgs: []string{`CN "A.Example.com" must also be one of the dns SANs`}},
		{name: "RFC: host-name CN compared normalised", body: gen("CN=A.Example.com", "ECC", 256, `,"SANs":{"dns":["a.example.com"]}`),
			pattern: 1, resolvedBy: "default"},
		{name: "RFC: a CN that is no host name", body: gen("CN=Build Server", "ECC", 256, ok1), pattern: 1, resolvedBy: "default"},
		{name: "RFC off in the pattern", body: gen("CN=x.example.com", "ECC", 384, `,"EnrollmentPatternId":5`), pattern: 5, resolvedBy: "EnrollmentPatternId"},
		{name: "too many SANs", body: gen("CN=a.example.com", "ECC", 256, `,"SANs":{"dns":["a.example.com","b.example.com","c.example.com","d.example.com","e.example.com","f.example.com"]}`),
			code: api.CodePolicy, msgs: []string{`6 SANs exceed the limit of 5 of enrollment pattern 1 ("General")`}},

		// Every reason at once, in order.
		{name: "multiple violations in one message", body: gen("CN=Bad_Host,OU=Sales", "RSA", 2048, pat3+`,"SANs":{"dns":["x.example.org"]},"AlternativeKeyType":"ML-DSA-87"`),
			code: api.CodePolicy, msgs: []string{
				`KeyLength 2048 is not allowed by enrollment pattern 3`,
				`AlternativeKeyType ML-DSA-87 is not allowed by enrollment pattern 3`,
				`CN "Bad_Host" does not match`,
				`OU "Sales" is refused`,
				`dns "x.example.org" is refused`,
			}},
	}
}

// TestGeneratePolicy sends every case through the real API on a server
// deciding with testdata/policy.yaml. A refusal must name the rule and
// pattern and leave no key in the token and no record; a success must
// carry the decided subject (defaults included) in the CSR and the
// decision in the record.
func TestGeneratePolicy(t *testing.T) {
	base := policyServer(t)
	ctx := context.Background()
	cases := policyCases()
	if len(cases) < 40 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objects, err := testToken.CountObjects(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rows := recordCount(t)
			status, raw, hdr := postJSON(t, base, generatePath, tc.body)
			if tc.code != "" {
				var eb api.ErrorBody
				if status != http.StatusBadRequest || json.Unmarshal(raw, &eb) != nil || eb.ErrorCode != tc.code {
					t.Fatalf("status %d body %s, want 400 %s", status, raw, tc.code)
				}
				at := 0
				for _, m := range tc.msgs {
					i := strings.Index(eb.Message[at:], m)
					if i < 0 {
						t.Fatalf("Message %q lacks (after position %d) %q", eb.Message, at, m)
					}
					at += i + len(m)
				}
				if after, err := testToken.CountObjects(ctx); err != nil || after != objects {
					t.Errorf("token objects %d → %d (%v): a refusal created a key", objects, after, err)
				}
				if after := recordCount(t); after != rows {
					t.Errorf("records %d → %d: a refusal wrote a record", rows, after)
				}
				return
			}
			if status != http.StatusOK {
				t.Fatalf("status %d: %s", status, raw)
			}
			var body api.GenerateResponse
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode([]byte(body.CSR))
			if block == nil {
				t.Fatalf("no PEM CSR: %s", raw)
			}
			req, err := x509.ParseCertificateRequest(block.Bytes)
			if err != nil || req.CheckSignature() != nil {
				t.Fatalf("CSR: %v", err)
			}
			if tc.subject != nil {
				if want := subjectDER(t, tc.subject); !bytes.Equal(req.RawSubject, want) {
					t.Errorf("subject %s, DER\n got %x\nwant %x", req.Subject, req.RawSubject, want)
				}
			}
			loc := hdr.Get("Location")
			id, _ := strconv.ParseInt(loc[strings.LastIndex(loc, "/")+1:], 10, 64)
			rec, err := testStore.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			var dec policy.Decision
			if err := json.Unmarshal(rec.Decision, &dec); err != nil {
				t.Fatal(err)
			}
			if dec.EnrollmentPatternID != tc.pattern || rec.EnrollmentPatternID != tc.pattern || dec.ResolvedBy != tc.resolvedBy ||
				dec.Policy != policyFile || dec.PolicySHA256 != policySHA || dec.PolicyLoadedAt.IsZero() || len(dec.Allowed) == 0 {
				t.Errorf("decision %+v (record pattern %d), want pattern %d resolved by %s from %s", dec, rec.EnrollmentPatternID, tc.pattern, tc.resolvedBy, policySHA)
			}
			if p, _ := policyPol.Current().Pattern(tc.pattern); dec.EnrollmentPatternName != p.Name {
				t.Errorf("decision pattern name %q, want %q", dec.EnrollmentPatternName, p.Name)
			}
			if tc.defaults != nil {
				var got []string
				for _, d := range dec.DefaultsApplied {
					got = append(got, d.SubjectPart+"="+d.Value)
				}
				if strings.Join(got, ",") != strings.Join(tc.defaults, ",") {
					t.Errorf("defaults applied %q, want %q", got, tc.defaults)
				}
			}
			// The record names the subject the CSR carries, defaults included.
			dn, err := csr.ParseDN(rec.Subject)
			if err != nil {
				t.Fatal(err)
			}
			if der, _ := dn.DER(); !bytes.Equal(der, req.RawSubject) {
				t.Errorf("record subject %q is not the CSR's subject %s", rec.Subject, req.Subject)
			}
		})
	}
}

func recordCount(t *testing.T) int {
	t.Helper()
	counts, err := testStore.CountByState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}

// TestEnrollmentPatternEndpoints reads the patterns back in Keyfactor's
// field names: effective rules, the template, 404 and 400 for bad ids, the
// system-wide settings; and the built-in default server, which has none.
func TestEnrollmentPatternEndpoints(t *testing.T) {
	base := policyServer(t)
	status, raw := getJSON(t, base, "/KeyfactorAPI/EnrollmentPatterns")
	var list []map[string]any
	if status != http.StatusOK || json.Unmarshal(raw, &list) != nil {
		t.Fatalf("list: %d %s", status, raw)
	}
	var ids []string
	for _, p := range list {
		ids = append(ids, strconv.Itoa(int(p["Id"].(float64))))
	}
	if strings.Join(ids, ",") != "1,3,4,5,6" {
		t.Errorf("pattern ids %v", ids)
	}
	status, raw = getJSON(t, base, "/keyfactorapi/enrollmentpatterns?PageReturned=2&ReturnLimit=2")
	if status != http.StatusOK || json.Unmarshal(raw, &list) != nil || len(list) != 2 || list[0]["Id"].(float64) != 4 {
		t.Errorf("page 2 of 2: %d %s", status, raw)
	}

	status, raw = getJSON(t, base, "/KeyfactorAPI/EnrollmentPatterns/3")
	var p3 api.EnrollmentPatternResponse
	if status != http.StatusOK || json.Unmarshal(raw, &p3) != nil {
		t.Fatalf("pattern 3: %d %s", status, raw)
	}
	for _, key := range []string{`"Id":3`, `"Name":"Web Server"`, `"TemplateDefault":true`, `"AllowedEnrollmentTypes":4`,
		`"CommonName":"WebServer"`, `"TemplateName":"Web Server"`, `"Oid":"1.3.6.1.4.1.311.21.8.1.2"`,
		`"SubjectPart":"CN"`, `"CaseSensitive":true`, `"Error":"OU must be IT or Ops"`, `{"SubjectPart":"O","Value":"Example Inc."}`,
		`"AllowWildcards":true`, `"RFCEnforcement":true`, `"AllowKeyReuse":false`, `"MinimumRSAKeySize":2048`, `"MaxSANs":10`,
		`{"Name":"RSA","BitLengths":[3072,4096],"Curves":[]}`, `{"Name":"ECC","BitLengths":[256],"Curves":["1.2.840.10045.3.1.7"]}`,
		`"AlternativeKeyAlgorithms":[{"Name":"ML-DSA-65","BitLengths":[65],"Curves":[]}]`} {
		if !strings.Contains(string(raw), key) {
			t.Errorf("pattern 3 lacks %s: %s", key, raw)
		}
	}
	if status, raw = getJSON(t, base, "/KeyfactorAPI/EnrollmentPatterns/99"); status != http.StatusNotFound || !strings.Contains(string(raw), api.CodeNotFound) {
		t.Errorf("unknown id: %d %s", status, raw)
	}
	if status, raw = getJSON(t, base, "/KeyfactorAPI/EnrollmentPatterns/abc"); status != http.StatusBadRequest || !strings.Contains(string(raw), api.CodeInvalidField) {
		t.Errorf("bad id: %d %s", status, raw)
	}
	if status, raw = getJSON(t, base, "/KeyfactorAPI/EnrollmentPatterns?ReturnLimit=0"); status != http.StatusBadRequest {
		t.Errorf("ReturnLimit 0: %d %s", status, raw)
	}

	status, raw = getJSON(t, base, "/KeyfactorAPI/EnrollmentPatterns/Settings")
	var st api.PatternSettingsResponse
	if status != http.StatusOK || json.Unmarshal(raw, &st) != nil || st.Policies.AllowWildcards || !st.Policies.RFCEnforcement ||
		len(st.Regexes) != 1 || st.Regexes[0].SubjectPart != "C" || len(st.Defaults) != 1 || st.Policies.MaxSANs != 5 ||
		len(st.Policies.PrimaryKeyAlgorithms) != 3 {
		t.Errorf("settings: %d %s", status, raw)
	}

	// The built-in default: no patterns, the secure built-in key rules.
	if status, raw = getJSON(t, testSrv.URL, "/KeyfactorAPI/EnrollmentPatterns"); status != http.StatusOK || string(raw) != "[]\n" {
		t.Errorf("built-in list: %d %q", status, raw)
	}
	status, raw = getJSON(t, testSrv.URL, "/KeyfactorAPI/EnrollmentPatterns/Settings")
	if status != http.StatusOK || !strings.Contains(string(raw), `{"Name":"RSA","BitLengths":[2048,3072,4096,8192],"Curves":[]}`) ||
		!strings.Contains(string(raw), `"AllowSealedAlternativeKeys":true`) {
		t.Errorf("built-in settings: %d %s", status, raw)
	}
	status, raw = getJSON(t, testSrv.URL, "/KeyfactorAPI/Status/Endpoints")
	if status != http.StatusOK || !strings.Contains(string(raw), `"GET /EnrollmentPatterns/{id}"`) || !strings.Contains(string(raw), `"GET /EnrollmentPatterns/Settings"`) {
		t.Errorf("Status/Endpoints: %s", raw)
	}
}
