package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/csrd/csrd/api"
)

// badBodies generates n request bodies that must all be refused: mutated
// and truncated JSON, huge and deep values, invalid UTF-8, NUL and control
// bytes in DN values, overlong SANs, out-of-range and wrongly typed
// numbers, wrong types for every field, and duplicate members. Every
// generator is built so that no output can be a valid request (the test
// would otherwise create keys and fail on the object count).
func badBodies(seed uint64, n int) []string {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	valid := `{"Subject":"CN=ok.example.com,O=Example","KeyType":"ECC","KeyLength":256,"SANs":{"dns":["ok.example.com"],"ip4":["10.1.2.3"]}}`
	str := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	withSubject := func(dn string) string {
		return `{"Subject":` + str(dn) + `,"KeyType":"ECC","KeyLength":256}`
	}
	withSANs := func(key string, vals ...string) string {
		b, _ := json.Marshal(map[string][]string{key: vals})
		return `{"Subject":"CN=x","KeyType":"ECC","KeyLength":256,"SANs":` + string(b) + `}`
	}
	randBytes := func(k int) string {
		b := make([]byte, k)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return string(b)
	}
	wrongValues := []string{`42`, `-1`, `true`, `false`, `[]`, `{}`, `["a"]`, `{"a":1}`, `1.5`, `"x"`}
	fields := []string{"Subject", "KeyType", "KeyLength", "Curve", "SANs", "Template", "EnrollmentPatternId", "AlternativeKeyType"}
	gens := []func() string{
		// Truncation: every strict prefix of a JSON object is invalid.
		func() string { return valid[:r.IntN(len(valid)-1)] },
		// Invalid UTF-8 spliced into the subject.
		func() string {
			return `{"Subject":"CN=` + string([]byte{0xC0 | byte(r.IntN(2)), byte(r.IntN(0x40))}) + `x","KeyType":"ECC","KeyLength":256}`
		},
		// Random binary garbage (never starts with '{').
		func() string { return "\x00" + randBytes(1+r.IntN(200)) },
		// NUL and control characters inside DN values.
		func() string { return withSubject("CN=a" + string(rune(r.IntN(0x20))) + "b") },
		func() string { return withSubject("CN=a\u007fb,O=" + string(rune(r.IntN(0x20)))) },
		// Huge values: an oversize CN, an oversize body, deep nesting.
		func() string { return withSubject("CN=" + strings.Repeat("a", 65+r.IntN(5000))) },
		func() string { return withSubject("CN=x,O=" + strings.Repeat("b", 65+r.IntN(200))) },
		func() string {
			return `{"Subject":"CN=x","Template":"` + strings.Repeat("t", api.MaxBodyBytes+r.IntN(1000)) + `"}`
		},
		func() string {
			d := 1 + r.IntN(5000)
			return `{"Subject":"CN=x","KeyType":"ECC","KeyLength":256,"SANs":{"dns":` + strings.Repeat("[", d) + strings.Repeat("]", d) + `}}`
		},
		// Overlong and malformed SANs.
		func() string { return withSANs("dns", strings.Repeat("a", 64+r.IntN(100))+".example.com") },
		func() string { return withSANs("dns", strings.Repeat("abcdefgh.", 30+r.IntN(10))+"com") },
		func() string {
			vals := make([]string, 1001+r.IntN(50))
			for i := range vals {
				vals[i] = fmt.Sprintf("h%d.example.com", i)
			}
			return withSANs("dns", vals...)
		},
		func() string {
			return withSANs("ip4", fmt.Sprintf("%d.%d.%d.%d", 256+r.IntN(100), r.IntN(256), r.IntN(256), r.IntN(256)))
		},
		func() string { return withSANs("uri", "no scheme "+randBytes(3)) },
		func() string {
			return withSANs([]string{"x400", "directory", "ediparty", "other", "bogus"}[r.IntN(5)], "v")
		},
		func() string { return withSANs("rfc822", "@"+strings.Repeat("x", r.IntN(10))) },
		// Out-of-range integers.
		func() string {
			return fmt.Sprintf(`{"Subject":"CN=x","KeyType":"RSA","KeyLength":%d}`, -1-r.IntN(1<<30))
		},
		func() string {
			return fmt.Sprintf(`{"Subject":"CN=x","KeyType":"RSA","KeyLength":%d%d}`, 1+r.IntN(9), r.Uint64())
		},
		func() string {
			return `{"Subject":"CN=x","KeyType":"RSA","KeyLength":1e` + fmt.Sprint(20+r.IntN(300)) + `}`
		},
		func() string {
			return fmt.Sprintf(`{"Subject":"CN=x","KeyType":"ECC","KeyLength":256,"EnrollmentPatternId":%d}`, -r.IntN(1<<20))
		},
		// Wrong types for every field (a null would be "absent", so not here).
		func() string {
			f := fields[r.IntN(len(fields))]
			v := wrongValues[r.IntN(len(wrongValues))]
			base := map[string]string{"Subject": `"CN=x"`, "KeyType": `"ECC"`, "KeyLength": `256`}
			if (f == "Subject" || f == "KeyType" || f == "Curve" || f == "Template" || f == "AlternativeKeyType") && v[0] == '"' {
				v = `17`
			}
			if (f == "KeyLength" || f == "EnrollmentPatternId") && (v == "-1") {
				v = `"256"`
			}
			if f == "SANs" && v == `{}` {
				v = `{"dns":"not-an-array"}`
			}
			base[f] = v
			parts := []string{}
			for k, val := range base {
				parts = append(parts, str(k)+":"+val)
			}
			return "{" + strings.Join(parts, ",") + "}"
		},
		// Duplicate members, in any case.
		func() string {
			k := []string{"Subject", "subject", "SUBJECT"}[r.IntN(3)]
			return `{"Subject":"CN=a.example.com","KeyType":"ECC","KeyLength":256,` + str(k) + `:"CN=b.example.com"}`
		},
		func() string {
			return `{"Subject":"CN=x","KeyType":"ECC","KeyLength":256,"SANs":{"dns":["a"],"DNS":["b"]}}`
		},
		// Broken DN syntax.
		func() string {
			return withSubject([]string{"CN", "=x", "CN=x,", "CN=\"x", `CN=x\`, "CN=x,,O=y", "ZZ=1", "CN=x+", "C=USA", "1.2.3=#zz", `CN=\q`}[r.IntN(11)])
		},
		// Random single-byte mutation that also truncates the closing
		// brace, so it can never be valid.
		func() string {
			b := []byte(valid[:len(valid)-1])
			b[r.IntN(len(b))] = byte(r.IntN(256))
			return string(b)
		},
	}
	out := make([]string, n)
	for i := range out {
		out[i] = gens[i%len(gens)]()
	}
	return out
}

// TestMalformedCorpus sends over a thousand generated bad requests through
// the real HTTP server: every answer is a 4xx with the error body, none is
// a 5xx, the server never panics, and the token's object count and the
// pending records are unchanged.
func TestMalformedCorpus(t *testing.T) {
	const n = 1300
	bodies := badBodies(20261129, n)
	ctx := context.Background()
	objectsBefore, err := testToken.CountObjects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pendingBefore := pendingCount(t)
	statuses := map[int]int{}
	for i, body := range bodies {
		req, _ := http.NewRequest(http.MethodPost, testSrv.URL+generatePath, strings.NewReader(body))
		req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		statuses[resp.StatusCode]++
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Fatalf("request %d answered %d: %s\nbody: %.300q", i, resp.StatusCode, raw, body)
		}
		var eb api.ErrorBody
		if err := json.Unmarshal(raw, &eb); err != nil || !strings.HasPrefix(eb.ErrorCode, "0x") || eb.Message == "" {
			t.Fatalf("request %d: error body %q", i, raw)
		}
	}
	t.Logf("%d bad requests, statuses %v", n, statuses)
	if after, err := testToken.CountObjects(ctx); err != nil || after != objectsBefore {
		t.Errorf("token objects %d before, %d after (%v)", objectsBefore, after, err)
	}
	if after := pendingCount(t); after != pendingBefore {
		t.Errorf("pending records %d before, %d after", pendingBefore, after)
	}
}
