package policy

import (
	"os"
	"testing"
	"time"

	"github.com/csrd/csrd/csr"
)

// FuzzParse: no policy file, however broken, panics the parser; and every
// file it accepts decides a plain request without panicking.
func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/full.yaml", "../policy.example.yaml", "../api/testdata/policy.yaml"} {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("EnrollmentPatterns:\n  - {Id: 1, Name: a, AllowedEnrollmentTypes: 4, Regexes: [{SubjectPart: CN, Regex: '(?i)^a'}]}\nDefaultEnrollmentPatternId: 1\n"))
	f.Add([]byte("Settings: {Policies: {PrimaryKeyAlgorithms: []}}\n"))
	subject, _ := csr.ParseDN("CN=a.example.com,O=x")
	sans, _ := csr.ParseSANs(map[string][]string{"dns": {"a.example.com"}, "ip": {"10.0.0.1"}})
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Parse(data, "fuzz.yaml", time.Unix(0, 0))
		if err != nil {
			return
		}
		for _, id := range append([]int{0}, e.DefaultPatternID()) {
			_, _ = e.Decide(Request{Key: KeyRequest{KeyType: "ECC", KeyLength: 256, AlternativeKeyType: "ML-DSA-65"}, Subject: subject, SANs: sans, EnrollmentPatternID: id})
		}
		_ = e.Patterns()
		_ = e.Settings()
	})
}
