package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPolicyCheck runs csrctl policy check on the shipped example, on a
// broken file (every problem listed, exit 1) and with bad arguments.
func TestPolicyCheck(t *testing.T) {
	broken := filepath.Join(t.TempDir(), "broken.yaml")
	if err := os.WriteFile(broken, []byte("Settings:\n  Policies:\n    MinimumRSAKeySize: 1024\nEnrollmentPatterns:\n  - {Id: 0, Name: x}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		code int
		want []string // substrings of stdout+stderr, in order
	}{
		{"example", []string{"policy", "check", "../../policy.example.yaml"}, 0, []string{
			"../../policy.example.yaml: OK (sha256 ",
			"system-wide settings:", "primary:     RSA 2048, 3072, 4096; ECC P-256, P-384, P-521; ED25519; ED448",
			`enrollment pattern 1 "General" [default pattern]`,
			`enrollment pattern 3 "Web Server" [template default]`, "template:    WebServer (1.3.6.1.4.1.311.21.8.16245.1)",
			"enrollment:  4 (CSR Generation)", "primary:     RSA 3072, 4096; ECC P-256, P-384",
			"alternative: none (sealed seeds allowed)", "names:       wildcards on, RFC enforcement on, minimum RSA 3072, max SANs 10",
			"default:     O=Key Example, Inc.",
			`enrollment pattern 4 "Hybrid"`, "primary:     ECC P-384; ED25519", "alternative: ML-DSA-65 (sealed seeds refused)",
		}},
		{"broken", []string{"policy", "check", broken}, 1, []string{
			"INVALID, 3 problem(s):", "MinimumRSAKeySize 1024", "Id 0 must be from 1", "AllowedEnrollmentTypes is required",
			"is not a valid policy file",
		}},
		{"missing file", []string{"policy", "check", "/nonexistent.yaml"}, 1, []string{"no such file"}},
		{"no file", []string{"policy", "check"}, 2, []string{"exactly one FILE"}},
		{"no subcommand", []string{"policy"}, 2, []string{"usage: csrctl policy check FILE"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tc.args, &out, &errOut)
			all := out.String() + errOut.String()
			if code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, all)
			}
			at := 0
			for _, w := range tc.want {
				i := strings.Index(all[at:], w)
				if i < 0 {
					t.Fatalf("output lacks %q after position %d:\n%s", w, at, all)
				}
				at += i + len(w)
			}
		})
	}
}
