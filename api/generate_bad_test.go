package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/store"
)

// TestGenerateBad sends malformed and refused requests. Each must get the
// right status and error body, and none may leave a key in the token or a
// pending record behind.
func TestGenerateBad(t *testing.T) {
	ok := func(extra string) string {
		return `{"Subject":"CN=x.example.com","KeyType":"ECC","KeyLength":256` + extra + `}`
	}
	cases := []struct {
		name   string
		method string
		path   string
		ctype  string
		hdr    map[string]string
		body   string
		status int
		code   string
		msg    string // substring of Message
	}{
		{name: "malformed JSON", body: `{"Subject":`, status: 400, code: api.CodeMalformedBody, msg: "truncated"},
		{name: "not JSON", body: `Subject=CN=x`, status: 400, code: api.CodeMalformedBody, msg: "JSON object"},
		{name: "JSON array", body: `[1,2]`, status: 400, code: api.CodeMalformedBody, msg: "JSON object"},
		{name: "empty body", body: ``, status: 400, code: api.CodeMalformedBody, msg: "empty"},
		{name: "trailing data", body: ok(``) + `{}`, status: 400, code: api.CodeMalformedBody, msg: "after the JSON object"},
		{name: "invalid UTF-8", body: "{\"Subject\":\"CN=\xff\xfe\",\"KeyType\":\"ECC\",\"KeyLength\":256}", status: 400, code: api.CodeMalformedBody, msg: "UTF-8"},
		{name: "Subject wrong type", body: `{"Subject":42,"KeyType":"ECC","KeyLength":256}`, status: 400, code: api.CodeInvalidField, msg: "Subject must be a string"},
		{name: "KeyLength wrong type", body: `{"Subject":"CN=x","KeyType":"ECC","KeyLength":"256"}`, status: 400, code: api.CodeInvalidField, msg: "KeyLength must be an integer"},
		{name: "KeyLength fraction", body: `{"Subject":"CN=x","KeyType":"RSA","KeyLength":2048.5}`, status: 400, code: api.CodeInvalidField, msg: "KeyLength"},
		{name: "SANs wrong type", body: ok(`,"SANs":["a.example.com"]`), status: 400, code: api.CodeInvalidField, msg: "SANs"},
		{name: "missing Subject", body: `{"KeyType":"ECC","KeyLength":256}`, status: 400, code: api.CodeInvalidField, msg: "Subject is required"},
		{name: "empty Subject", body: `{"Subject":"","KeyType":"ECC","KeyLength":256}`, status: 400, code: api.CodeInvalidField, msg: "Subject is required"},
		{name: "missing KeyType", body: `{"Subject":"CN=x","KeyLength":256}`, status: 400, code: api.CodeInvalidField, msg: "KeyType is required"},
		{name: "empty KeyType (SDK default)", body: `{"Subject":"CN=x","KeyType":"","KeyLength":256}`, status: 400, code: api.CodeInvalidField, msg: "KeyType is required"},
		{name: "unknown KeyType", body: `{"Subject":"CN=x","KeyType":"DSA","KeyLength":2048}`, status: 400, code: api.CodePolicy, msg: "DSA"},
		{name: "negative KeyLength", body: `{"Subject":"CN=x","KeyType":"RSA","KeyLength":-2048}`, status: 400, code: api.CodeInvalidField, msg: "KeyLength -2048"},
		{name: "huge KeyLength", body: `{"Subject":"CN=x","KeyType":"RSA","KeyLength":99999999999}`, status: 400, code: api.CodeInvalidField, msg: "KeyLength"},
		{name: "RSA without KeyLength", body: `{"Subject":"CN=x","KeyType":"RSA"}`, status: 400, code: api.CodePolicy, msg: "KeyLength is required"},
		{name: "RSA 1024", body: `{"Subject":"CN=x","KeyType":"RSA","KeyLength":1024}`, status: 400, code: api.CodePolicy, msg: "KeyLength 1024"},
		{name: "RSA 2047", body: `{"Subject":"CN=x","KeyType":"RSA","KeyLength":2047}`, status: 400, code: api.CodePolicy, msg: "2048, 3072, 4096, 8192"},
		{name: "RSA with Curve", body: `{"Subject":"CN=x","KeyType":"RSA","KeyLength":2048,"Curve":"P-256"}`, status: 400, code: api.CodePolicy, msg: "Curve"},
		{name: "ECC bad size", body: `{"Subject":"CN=x","KeyType":"ECC","KeyLength":255}`, status: 400, code: api.CodePolicy, msg: "KeyLength 255"},
		{name: "ECC unknown curve", body: `{"Subject":"CN=x","KeyType":"ECC","Curve":"1.3.132.0.10"}`, status: 400, code: api.CodePolicy, msg: "1.3.132.0.10"},
		{name: "ECC curve contradicts length", body: `{"Subject":"CN=x","KeyType":"ECC","KeyLength":256,"Curve":"1.3.132.0.34"}`, status: 400, code: api.CodePolicy, msg: "contradicts KeyLength 256"},
		{name: "ECC without size or curve", body: `{"Subject":"CN=x","KeyType":"ECC"}`, status: 400, code: api.CodePolicy, msg: "KeyLength or Curve"},
		{name: "ED25519 wrong KeyLength", body: `{"Subject":"CN=x","KeyType":"ED25519","KeyLength":256}`, status: 400, code: api.CodePolicy, msg: "KeyLength 256 is not valid for KeyType ED25519"},
		{name: "ED448 wrong KeyLength", body: `{"Subject":"CN=x","KeyType":"Ed448","KeyLength":456}`, status: 400, code: api.CodePolicy, msg: "use 448 or leave it out"},
		{name: "ED448 with Curve", body: `{"Subject":"CN=x","KeyType":"ED448","Curve":"edwards448"}`, status: 400, code: api.CodePolicy, msg: "Curve is not valid for KeyType ED448"},
		{name: "alternative curve", body: ok(`,"AlternativeKeyType":"ML-DSA-65","AlternativeCurve":"P-256"`), status: 400, code: api.CodePolicy, msg: "ECC is not supported as an alternative key"},
		{name: "alternative curve alone", body: ok(`,"AlternativeCurve":"1.2.840.10045.3.1.7"`), status: 400, code: api.CodePolicy, msg: "ECC is not supported as an alternative key"},
		{name: "alternative length mismatch", body: ok(`,"AlternativeKeyType":"ML-DSA-65","AlternativeKeyLength":87`), status: 400, code: api.CodePolicy, msg: "AlternativeKeyLength 87 does not match ML-DSA-65"},
		{name: "alternative length without type", body: ok(`,"AlternativeKeyLength":65`), status: 400, code: api.CodePolicy, msg: "AlternativeKeyLength needs an AlternativeKeyType"},
		{name: "alternative RSA", body: ok(`,"AlternativeKeyType":"RSA","AlternativeKeyLength":2048`), status: 400, code: api.CodePolicy, msg: "not an alternative key type"},
		{name: "alternative SLH-DSA", body: ok(`,"AlternativeKeyType":"SLH-DSA-SHA2-128s"`), status: 400, code: api.CodePolicy, msg: "ML-DSA-44, ML-DSA-65 or ML-DSA-87"},
		{name: "bad pattern id", body: ok(`,"EnrollmentPatternId":0`), status: 400, code: api.CodeInvalidField, msg: "EnrollmentPatternId"},
		{name: "DN unknown type", body: `{"Subject":"XX=y","KeyType":"ECC","KeyLength":256}`, status: 400, code: api.CodeInvalidSubject, msg: "XX"},
		{name: "DN missing =", body: `{"Subject":"CN","KeyType":"ECC","KeyLength":256}`, status: 400, code: api.CodeInvalidSubject},
		{name: "DN empty value", body: `{"Subject":"CN=,O=x","KeyType":"ECC","KeyLength":256}`, status: 400, code: api.CodeInvalidSubject},
		{name: "DN unbalanced quote", body: `{"Subject":"CN=\"abc,O=x","KeyType":"ECC","KeyLength":256}`, status: 400, code: api.CodeInvalidSubject},
		{name: "DN bad escape", body: `{"Subject":"CN=a\\zz","KeyType":"ECC","KeyLength":256}`, status: 400, code: api.CodeInvalidSubject},
		{name: "DN country three letters", body: `{"Subject":"CN=x,C=USA","KeyType":"ECC","KeyLength":256}`, status: 400, code: api.CodeInvalidSubject, msg: "C"},
		{name: "DN CN too long", body: `{"Subject":"CN=` + strings.Repeat("a", 65) + `","KeyType":"ECC","KeyLength":256}`, status: 400, code: api.CodeInvalidSubject, msg: "64"},
		{name: "DN hex value not a string type", body: `{"Subject":"CN=x,1.2.3=#0403616263","KeyType":"ECC","KeyLength":256}`, status: 400, code: api.CodeInvalidSubject},
		{name: "DN control character", body: `{"Subject":"CN=a\u0000b","KeyType":"ECC","KeyLength":256}`, status: 400, code: api.CodeInvalidSubject},
		{name: "SAN unknown key", body: ok(`,"SANs":{"x400":["a"]}`), status: 400, code: api.CodeInvalidSAN, msg: "x400"},
		{name: "SAN bad dns", body: ok(`,"SANs":{"dns":["a..example.com"]}`), status: 400, code: api.CodeInvalidSAN, msg: "a..example.com"},
		{name: "SAN wildcard not leftmost", body: ok(`,"SANs":{"dns":["www.*.example.com"]}`), status: 400, code: api.CodeInvalidSAN},
		{name: "SAN ip4 given v6", body: ok(`,"SANs":{"ip4":["2001:db8::1"]}`), status: 400, code: api.CodeInvalidSAN, msg: "ip4"},
		{name: "SAN bad ip6", body: ok(`,"SANs":{"ip6":["1.2.3.4"]}`), status: 400, code: api.CodeInvalidSAN, msg: "ip6"},
		{name: "SAN relative uri", body: ok(`,"SANs":{"uri":["/relative"]}`), status: 400, code: api.CodeInvalidSAN, msg: "uri"},
		{name: "SAN bad email", body: ok(`,"SANs":{"rfc822":["not-an-email"]}`), status: 400, code: api.CodeInvalidSAN},
		{name: "SAN bad oid", body: ok(`,"SANs":{"registeredid":["1.x.3"]}`), status: 400, code: api.CodeInvalidSAN},
		{name: "SAN empty value", body: ok(`,"SANs":{"dns":[""]}`), status: 400, code: api.CodeInvalidSAN},
		// encoding/json binds "ſubject" (U+017F, long s) to Subject and
		// "\u212AeyType" (U+212A, Kelvin sign) to KeyType: a second
		// spelling must not override the first, nor a lone one slip past
		// readers that look for the ASCII name.
		{name: "long-s duplicate of Subject", body: `{"Subject":"CN=a.example.com","ſubject":"CN=evil.example.com","KeyType":"ECC","KeyLength":256}`, status: 400, code: api.CodeMalformedBody, msg: `\u017fubject`},
		{name: "escaped long-s duplicate", body: `{"Subject":"CN=a.example.com","\u017fubject":"CN=evil.example.com","KeyType":"ECC","KeyLength":256}`, status: 400, code: api.CodeMalformedBody, msg: `\u017fubject`},
		{name: "lone long-s Subject", body: `{"ſubject":"CN=evil.example.com","KeyType":"ECC","KeyLength":256}`, status: 400, code: api.CodeMalformedBody, msg: "ASCII"},
		{name: "Kelvin-sign duplicate of KeyType", body: `{"Subject":"CN=x.example.com","KeyType":"DSA","\u212AeyType":"ECC","KeyLength":256}`, status: 400, code: api.CodeMalformedBody, msg: `\u212aeyType`},
		{name: "missing requested-with header", hdr: map[string]string{"X-Keyfactor-Requested-With": ""}, body: ok(``), status: 400, code: api.CodeMissingHeader, msg: "X-Keyfactor-Requested-With"},
		{name: "unsupported api version", hdr: map[string]string{"X-Keyfactor-Api-Version": "2"}, body: ok(``), status: 400, code: api.CodeUnsupportedAPIVer},
		{name: "wrong content type", ctype: "text/plain", body: ok(``), status: 415, code: api.CodeUnsupportedMedia},
		{name: "missing content type", ctype: "-", body: ok(``), status: 415, code: api.CodeUnsupportedMedia},
		{name: "non-UTF-8 charset", ctype: "application/json; charset=latin1", body: ok(``), status: 415, code: api.CodeUnsupportedMedia},
		{name: "oversize body", body: `{"Subject":"CN=x","Template":"` + strings.Repeat("a", api.MaxBodyBytes) + `"}`, status: 413, code: api.CodeBodyTooLarge},
		{name: "wrong method", method: http.MethodGet, body: ``, status: 405, code: api.CodeMethodNotAllowed},
		{name: "unknown route", path: "/KeyfactorAPI/CSRGeneration/Nope", body: ok(``), status: 404, code: api.CodeNotFound},
	}
	if len(cases) < 30 {
		t.Fatalf("the issue asks for at least 30 bad requests, have %d", len(cases))
	}
	ctx := context.Background()
	objectsBefore, err := testToken.CountObjects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pendingBefore := pendingCount(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method, path, ctype := tc.method, tc.path, tc.ctype
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = generatePath
			}
			switch ctype {
			case "":
				ctype = "application/json"
			case "-":
				ctype = ""
			}
			resp := send(t, method, path, ctype, tc.body, tc.hdr)
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, raw)
			}
			var eb api.ErrorBody
			if err := json.Unmarshal(raw, &eb); err != nil {
				t.Fatalf("error body is not JSON: %s", raw)
			}
			if eb.ErrorCode != tc.code {
				t.Errorf("ErrorCode %s, want %s (%s)", eb.ErrorCode, tc.code, eb.Message)
			}
			if eb.Message == "" || !strings.Contains(eb.Message, tc.msg) {
				t.Errorf("Message %q does not contain %q", eb.Message, tc.msg)
			}
		})
	}
	if after, err := testToken.CountObjects(ctx); err != nil || after != objectsBefore {
		t.Errorf("token objects %d before, %d after (%v): a refused request left a key", objectsBefore, after, err)
	}
	if after := pendingCount(t); after != pendingBefore {
		t.Errorf("pending records %d before, %d after", pendingBefore, after)
	}
}

func pendingCount(t *testing.T) int {
	t.Helper()
	counts, err := testStore.CountByState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return counts[store.StatePending]
}

func TestStatusEndpoints(t *testing.T) {
	req, _ := http.NewRequest(http.MethodGet, testSrv.URL+"/KeyfactorAPI/Status/Endpoints", nil)
	req.Header.Set("x-keyfactor-requested-with", "APIClient")
	req.Header.Set("x-keyfactor-api-version", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var eps []string
	if err := json.NewDecoder(resp.Body).Decode(&eps); err != nil {
		t.Fatalf("body must be a JSON array of strings: %v", err)
	}
	found := false
	for _, e := range eps {
		found = found || e == "POST /CSRGeneration/Generate"
	}
	if !found {
		t.Errorf("endpoints %q do not list POST /CSRGeneration/Generate", eps)
	}
}
