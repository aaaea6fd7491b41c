package policy

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/csrd/csrd/csr"
)

// FuzzParse drives the policy file loader with arbitrary bytes, seeded
// with the shipped policy files. Nothing may
// panic or hang; a refused file must be a *LoadError naming at least one
// problem (csrd prints them to the operator, and SIGHUP keeps the old
// policy on it); an accepted file must parse the same way twice, and its
// Engine must decide a handful of ordinary requests without panicking,
// answering each with a Decision or a *Error that lists its violations.
func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/full.yaml", "../policy.example.yaml", "../api/testdata/policy.yaml"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, seed := range [][]byte{
		[]byte("EnrollmentPatterns:\n  - {Id: 1, Name: a, AllowedEnrollmentTypes: 4, Regexes: [{SubjectPart: CN, Regex: '(?i)^a'}]}\nDefaultEnrollmentPatternId: 1\n"),
		[]byte("Settings: {Policies: {PrimaryKeyAlgorithms: []}}\n"),
		[]byte("Settings:\n  Policies:\n    AllowWildcards: true\n"),
		[]byte("EnrollmentPatterns:\n  - {Id: 1, Name: a, AllowedEnrollmentTypes: 4}\nDefaultEnrollmentPatternId: 1\n"),
		[]byte("Templates:\n  - {Name: T, OID: 1.2.3}\nEnrollmentPatterns:\n  - {Id: 2, Name: b, Template: T, TemplateDefault: true, AllowedEnrollmentTypes: 4}\n"),
		[]byte("Settings:\n  Regexes:\n    - {SubjectPart: CN, Regex: '^(a|b)+$'}\n  Defaults:\n    - {SubjectPart: O, Value: x}\n"),
		[]byte("Settings: &a\n  Policies: *a\n"),
		[]byte("a: &a [*a, *a]\n"),
		[]byte("EnrollmentPatterns:\n  - Id: 1\n    Id: 1\n"),
		[]byte("Settings:\n  Policies:\n    MinimumRSAKeySize: -1\n    MaxSANs: 99999999999999999999\n"),
		[]byte("---\n...\n---\n"),
		[]byte("\x00\xff"),
		[]byte(""),
	} {
		f.Add(seed)
	}
	loaded := time.Unix(1700000000, 0)
	reqs := fuzzRequests(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		// Go's fuzzer has no hang detection; a file that takes seconds to
		// load would stall start-up and every SIGHUP reload.
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				panic(fmt.Sprintf("policy: Parse or Decide took over 10 s on %q", data))
			}
		}()
		e, err := Parse(data, "fuzz.yaml", loaded)
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) || !errors.Is(err, ErrInvalidFile) || len(le.Problems) == 0 {
				t.Fatalf("refusal is not a *LoadError with problems: %#v", err)
			}
			return
		}
		again, err := Parse(data, "fuzz.yaml", loaded)
		if err != nil {
			t.Fatalf("accepted once, refused the second time: %v", err)
		}
		if !reflect.DeepEqual(e.Settings(), again.Settings()) || !reflect.DeepEqual(e.Patterns(), again.Patterns()) {
			t.Fatal("the same file parsed to two different policies")
		}
		_ = e.Templates()
		_ = e.Warnings()
		for _, req := range append(reqs, Request{Key: reqs[0].Key, Subject: reqs[0].Subject, SANs: reqs[0].SANs, EnrollmentPatternID: e.DefaultPatternID()}) {
			dec, err := e.Decide(req)
			if err != nil {
				var pe *Error
				if !errors.As(err, &pe) || len(pe.Violations) == 0 {
					t.Fatalf("Decide error is not a *policy.Error with violations: %v", err)
				}
				continue
			}
			if dec == nil {
				t.Fatal("Decide returned neither a decision nor an error")
			}
		}
	})
}

// fuzzRequests are ordinary requests every accepted policy must decide.
func fuzzRequests(f *testing.F) []Request {
	dn, err := csr.ParseDN("CN=www.example.com,O=Example,C=US")
	if err != nil {
		f.Fatal(err)
	}
	sans, err := csr.ParseSANs(map[string][]string{"dns": {"www.example.com", "*.example.com"}, "ip4": {"10.0.0.1"}})
	if err != nil {
		f.Fatal(err)
	}
	return []Request{
		{Key: KeyRequest{KeyType: "ECC", KeyLength: 256}, Subject: dn, SANs: sans},
		{Key: KeyRequest{KeyType: "RSA", KeyLength: 2048}, Subject: dn, SANs: sans, Template: "WebServer"},
		{Key: KeyRequest{KeyType: "RSA", KeyLength: 4096, AlternativeKeyType: "ML-DSA-65"}, Subject: dn, EnrollmentPatternID: 1},
		{Key: KeyRequest{KeyType: "ED25519"}, Subject: dn, EnrollmentPatternID: 3},
		{Key: KeyRequest{KeyType: "ECC", Curve: "P-384"}, Subject: dn, Template: "1.2.3", EnrollmentPatternID: 2},
	}
}
