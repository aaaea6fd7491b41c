package policy

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/csrd/csrd/csr"
)

func mustParse(t *testing.T, text string) *Engine {
	t.Helper()
	e, err := Parse([]byte(text), "test.yaml", time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func dnsSANs(t *testing.T, names ...string) *csr.SANs {
	t.Helper()
	s, err := csr.ParseSANs(map[string][]string{"dns": names})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fullEngine(t *testing.T) *Engine {
	t.Helper()
	data, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e, err := Parse(data, "testdata/full.yaml", time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestParseRefuses(t *testing.T) {
	const pat = "EnrollmentPatterns:\n  - {Id: 1, Name: p, AllowedEnrollmentTypes: 4}\n"
	cases := []struct {
		name, file string
		problems   []string // substrings, each must appear
	}{
		{"empty", "", []string{"the file is empty"}},
		{"no patterns", "Settings: {}\n", []string{"at least one enrollment pattern is required"}},
		{"unknown key", "Setings: {}\n" + pat, []string{"field Setings not found"}},
		{"yaml syntax", "EnrollmentPatterns: [\n", []string{"line"}},
		{"RSA below floor", "Settings:\n  Policies:\n    PrimaryKeyAlgorithms: [{KeyType: RSA, BitLengths: [1024]}]\n" + pat,
			[]string{"RSA BitLengths 1024 is not allowed"}},
		{"minimum below floor", "Settings:\n  Policies:\n    MinimumRSAKeySize: 1024\n" + pat, []string{"MinimumRSAKeySize 1024"}},
		{"unknown key type", "Settings:\n  Policies:\n    PrimaryKeyAlgorithms: [{KeyType: DSA}]\n" + pat, []string{`KeyType "DSA" is not a key type`}},
		{"ML-DSA as primary", "Settings:\n  Policies:\n    PrimaryKeyAlgorithms: [{KeyType: ML-DSA-44}]\n" + pat, []string{"not a primary key type"}},
		{"RSA as alternative", "Settings:\n  Policies:\n    AlternativeKeyAlgorithms: [{KeyType: RSA}]\n" + pat, []string{"not a alternative key type"}},
		{"Name and KeyType disagree", "Settings:\n  Policies:\n    PrimaryKeyAlgorithms: [{KeyType: RSA, Name: ECC}]\n" + pat, []string{`Name "ECC" and KeyType "RSA" disagree`}},
		{"unknown curve", "Settings:\n  Policies:\n    PrimaryKeyAlgorithms: [{KeyType: ECC, Curves: [brainpoolP256r1]}]\n" + pat, []string{`Curve "brainpoolP256r1"`}},
		{"duplicate id and name, missing types", "EnrollmentPatterns:\n  - {Id: 1, Name: a, AllowedEnrollmentTypes: 4}\n  - {Id: 1, Name: A}\n",
			[]string{"Id 1 is used twice", `Name "A" is used twice`, "AllowedEnrollmentTypes is required"}},
		{"unknown template", "EnrollmentPatterns:\n  - {Id: 1, Name: a, Template: Nope, AllowedEnrollmentTypes: 4}\n", []string{`Template "Nope" is not one of the Templates`}},
		{"two template defaults", "Templates: [{Name: T}]\nEnrollmentPatterns:\n  - {Id: 1, Name: a, Template: T, TemplateDefault: true, AllowedEnrollmentTypes: 4}\n  - {Id: 2, Name: b, Template: t, TemplateDefault: true, AllowedEnrollmentTypes: 4}\n",
			[]string{"already has TemplateDefault pattern 1"}},
		{"template without default", "Templates: [{Name: T}]\nEnrollmentPatterns:\n  - {Id: 1, Name: a, Template: T, AllowedEnrollmentTypes: 4}\n",
			[]string{`template "T" has enrollment patterns but none is its TemplateDefault`}},
		{"default pattern missing", pat + "DefaultEnrollmentPatternId: 9\n", []string{"DefaultEnrollmentPatternId 9"}},
		{"bad regex and part", "EnrollmentPatterns:\n  - Id: 1\n    Name: a\n    AllowedEnrollmentTypes: 4\n    Regexes: [{SubjectPart: CN, Regex: '('}, {SubjectPart: XX, Regex: a}]\n",
			[]string{"does not compile", `SubjectPart "XX"`}},
		{"default against regex", "EnrollmentPatterns:\n  - Id: 1\n    Name: a\n    AllowedEnrollmentTypes: 4\n    Regexes: [{SubjectPart: C, Regex: '^DE$'}]\n    Defaults: [{SubjectPart: C, Value: US}]\n",
			[]string{`default C "US" does not match`}},
		{"default bad value and SAN", "EnrollmentPatterns:\n  - Id: 1\n    Name: a\n    AllowedEnrollmentTypes: 4\n    Defaults: [{SubjectPart: C, Value: USA}, {SubjectPart: dns, Value: x}]\n",
			[]string{`Value "USA" for C is not valid`, "Defaults fill in subject attributes only"}},
		{"nothing in common", "Templates:\n  - {Name: T, PrimaryKeyAlgorithms: [{KeyType: ED448}]}\nEnrollmentPatterns:\n  - Id: 1\n    Name: a\n    Template: T\n    TemplateDefault: true\n    AllowedEnrollmentTypes: 4\n    Policies: {PrimaryKeyAlgorithms: [{KeyType: ECC}]}\n",
			[]string{"no primary key algorithm is left"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file), "bad.yaml", time.Now())
			var le *LoadError
			if !errors.As(err, &le) || !errors.Is(err, ErrInvalidFile) {
				t.Fatalf("want *LoadError, got %v", err)
			}
			for _, p := range tc.problems {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not mention %q", err, p)
				}
			}
			if len(tc.problems) > 1 && len(le.Problems) < len(tc.problems) {
				t.Errorf("problems %q: want all %d reported", le.Problems, len(tc.problems))
			}
		})
	}
}

func TestEffectiveRules(t *testing.T) {
	e := fullEngine(t)
	if info := e.Info(); len(info.SHA256) != 64 || info.Source != "testdata/full.yaml" || !info.LoadedAt.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("info %+v", info)
	}
	web, ok := e.Pattern(3)
	if !ok {
		t.Fatal("pattern 3 missing")
	}
	// System RSA 2048-4096 ∩ template (all standard sizes) with the
	// pattern's minimum 3072; ECC system P-256, P-384 ∩ template 256, 384.
	want := []AlgorithmRule{{KeyType: RSA, BitLengths: []int{3072, 4096}}, {KeyType: ECC, Curves: []string{"P-256", "P-384"}}}
	if !reflect.DeepEqual(web.Policies.PrimaryKeyAlgorithms, want) {
		t.Errorf("pattern 3 primary %+v, want %+v", web.Policies.PrimaryKeyAlgorithms, want)
	}
	if got := DescribeRules(web.Policies.AlternativeKeyAlgorithms); got != "ML-DSA-65; ML-DSA-87" {
		t.Errorf("pattern 3 alternatives %s", got)
	}
	if !web.Policies.AllowWildcards || !web.Policies.RFCEnforcement || web.Policies.MinimumRSAKeySize != 3072 || web.Template.Name != "WebServer" {
		t.Errorf("pattern 3 policies %+v", web.Policies)
	}
	// The pattern's regexes come first, then the system-wide C regex; its
	// O default and the system-wide C default both apply.
	if len(web.Regexes) != 3 || web.Regexes[2].SubjectPart != "C" || len(web.Defaults) != 2 {
		t.Errorf("pattern 3 regexes %+v defaults %+v", web.Regexes, web.Defaults)
	}
	gen, _ := e.Pattern(1)
	if got := DescribeRules(gen.Policies.PrimaryKeyAlgorithms); got != "RSA 2048, 3072, 4096; ECC P-256, P-384; ED25519" || !gen.Default {
		t.Errorf("pattern 1 primary %s default %v", got, gen.Default)
	}
	if w := strings.Join(e.Warnings(), "\n"); !strings.Contains(w, `template "Legacy" has no enrollment pattern`) ||
		!strings.Contains(w, `enrollment pattern 4 ("Web PFX only") does not allow CSR Generation`) {
		t.Errorf("warnings %q", w)
	}
}

func TestResolve(t *testing.T) {
	e := fullEngine(t)
	ecc := KeyRequest{KeyType: "ECC", KeyLength: 256}
	sans := dnsSANs(t, "www.example.com")
	cases := []struct {
		name     string
		template string
		id       int
		wantID   int
		by       string
		refusal  string
	}{
		{"pattern id", "", 3, 3, "EnrollmentPatternId", ""},
		{"pattern id and its template by OID", "1.3.6.1.4.1.311.21.8.1.2", 3, 3, "EnrollmentPatternId", ""},
		{"template alone", "webserver", 0, 3, "Template", ""},
		{"neither", "", 0, 1, "default", ""},
		{"mismatch", "Legacy", 3, 0, "", `Template "Legacy" does not match enrollment pattern 3 ("Web Server"), whose template is "WebServer"`},
		{"template on a pattern without one", "WebServer", 1, 0, "", `not tied to a template`},
		{"unknown id", "", 99, 0, "", "EnrollmentPatternId 99 is not a configured enrollment pattern"},
		{"template without pattern", "Legacy", 0, 0, "", `Template "Legacy" has no enrollment pattern`},
		{"unknown template", "Nope", 0, 0, "", `Template "Nope" is not a configured template`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			subject, _ := csr.ParseDN("CN=www.example.com")
			dec, err := e.Decide(Request{Key: ecc, Subject: subject, SANs: sans, Template: tc.template, EnrollmentPatternID: tc.id})
			if tc.refusal != "" {
				var pe *Error
				if !errors.As(err, &pe) || pe.Violations[0].Rule != RulePattern || !strings.Contains(err.Error(), tc.refusal) {
					t.Fatalf("want refusal %q, got %v", tc.refusal, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if dec.EnrollmentPatternID != tc.wantID || dec.ResolvedBy != tc.by {
				t.Errorf("decided by pattern %d (%s), want %d (%s)", dec.EnrollmentPatternID, dec.ResolvedBy, tc.wantID, tc.by)
			}
		})
	}
	// No default pattern: a request naming neither is refused.
	e2 := mustParse(t, "EnrollmentPatterns:\n  - {Id: 5, Name: only, AllowedEnrollmentTypes: 4}\n")
	_, err := e2.Decide(Request{Key: ecc, SANs: sans})
	if err == nil || !strings.Contains(err.Error(), "EnrollmentPatternId or Template is required") {
		t.Fatalf("no default pattern: %v", err)
	}
}

func TestDecideAllViolationsAtOnce(t *testing.T) {
	e := fullEngine(t)
	subject, _ := csr.ParseDN("CN=Bad_Name,C=FR")
	sans, _ := csr.ParseSANs(map[string][]string{"dns": {"host.other.org"}})
	_, err := e.Decide(Request{Key: KeyRequest{KeyType: "RSA", KeyLength: 8192, AlternativeKeyType: "ML-DSA-44"}, Subject: subject, SANs: sans, EnrollmentPatternID: 4})
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("want *Error, got %v", err)
	}
	var rules []string
	for _, v := range pe.Violations {
		rules = append(rules, v.Rule+":"+v.Field)
		if v.PatternID != 4 || v.PatternName != "Web PFX only" {
			t.Errorf("violation %+v does not name pattern 4", v)
		}
	}
	want := []string{"enrollment-type:EnrollmentPatternId", "key-algorithm:KeyLength", "key-algorithm:AlternativeKeyType", "regex:Subject.C"}
	if !reflect.DeepEqual(rules, want) {
		t.Errorf("rules %v, want %v\n%s", rules, want, pe.Message())
	}
	if !strings.Contains(pe.Message(), `KeyLength 8192 is not allowed by enrollment pattern 4 ("Web PFX only") (the system-wide policy does not allow it): RSA sizes allowed are 2048, 3072, 4096`) {
		t.Errorf("message %q", pe.Message())
	}
}

func TestReloader(t *testing.T) {
	a := mustParse(t, "EnrollmentPatterns:\n  - {Id: 1, Name: a, AllowedEnrollmentTypes: 4}\nDefaultEnrollmentPatternId: 1\n")
	r := NewReloader(a)
	req := Request{Key: KeyRequest{KeyType: "RSA", KeyLength: 2048}, SANs: dnsSANs(t, "x.example.com")}
	if _, err := r.Decide(req); err != nil {
		t.Fatal(err)
	}
	b := []byte("Settings:\n  Policies:\n    MinimumRSAKeySize: 3072\nEnrollmentPatterns:\n  - {Id: 1, Name: b, AllowedEnrollmentTypes: 4}\nDefaultEnrollmentPatternId: 1\n")
	got, err := r.Reload(func() (*Engine, error) { return Parse(b, "b.yaml", time.Now()) })
	if err != nil || got != r.Current() || got == a {
		t.Fatalf("reload: %v", err)
	}
	if _, err := r.Decide(req); err == nil || !strings.Contains(err.Error(), "KeyLength 2048 is not allowed") {
		t.Fatalf("new policy not in force: %v", err)
	}
	kept, err := r.Reload(func() (*Engine, error) { return Parse([]byte("EnrollmentPatterns: nope\n"), "c.yaml", time.Now()) })
	if !errors.Is(err, ErrInvalidFile) || kept != got || r.Current() != got {
		t.Fatalf("broken reload: err %v, in force %v", err, r.Current().Info())
	}
}

// TestReloaderConcurrent decides from many goroutines while the policy is
// swapped back and forth; under -race this proves the swap is atomic and
// that every decision comes whole from one of the two files.
func TestReloaderConcurrent(t *testing.T) {
	const a = "EnrollmentPatterns:\n  - {Id: 1, Name: a, AllowedEnrollmentTypes: 4}\nDefaultEnrollmentPatternId: 1\n"
	const b = "EnrollmentPatterns:\n  - {Id: 2, Name: b, AllowedEnrollmentTypes: 4}\nDefaultEnrollmentPatternId: 2\n"
	r := NewReloader(mustParse(t, a))
	req := Request{Key: KeyRequest{KeyType: "ECC", KeyLength: 256}, SANs: dnsSANs(t, "x.example.com")}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				dec, err := r.Decide(req)
				// Either engine, never a mix of the two.
				whole := dec.EnrollmentPatternID == 1 && dec.EnrollmentPatternName == "a" ||
					dec.EnrollmentPatternID == 2 && dec.EnrollmentPatternName == "b"
				if err != nil || !whole {
					errs <- fmt.Sprintf("decision %+v, %v", dec, err)
					return
				}
			}
		}()
	}
	for i := range 100 {
		text := a
		if i%2 == 0 {
			text = b
		}
		if _, err := r.Reload(func() (*Engine, error) { return Parse([]byte(text), "x.yaml", time.Now()) }); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
