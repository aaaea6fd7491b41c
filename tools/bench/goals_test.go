package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDefaultGoals: the built-in targets file sets every goal.
func TestDefaultGoals(t *testing.T) {
	g, err := LoadGoals("")
	if err != nil {
		t.Fatal(err)
	}
	algs := map[string]bool{}
	for _, r := range g.Ratio {
		if r.Min <= 0 || r.Min > 1 {
			t.Errorf("ratio goal for %s: min %v", r.Alg, r.Min)
		}
		algs[r.Alg] = true
	}
	if !algs["P-256"] || !algs["Ed25519"] || !algs["RSA-2048"] {
		t.Errorf("ratio goals for %v, want P-256, Ed25519 and RSA-2048", algs)
	}
	if g.Filled.Alg == "" || g.Filled.Min <= 0 || g.Pool.Tokens < 2 || g.Pool.Min <= 0 ||
		g.PeakRSS.C < 1 || g.PeakRSS.BelowMiB <= 0 || g.P99.MaxC < 1 || g.P99.MaxTimesP50 <= 1 {
		t.Errorf("goals incomplete: %+v", g)
	}
}

// TestLoadGoals: a targets file is read strictly, and the report's
// targets follow it: their names and verdicts come from the file.
func TestLoadGoals(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, body, wantErr string
	}{
		{"unknown field", `{"ratios": []}`, "unknown field"},
		{"unknown key type", `{"ratio": [{"alg": "P-257", "min": 0.9}]}`, "P-257"},
		{"not JSON", `ratio: 0.9`, "targets"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := LoadGoals(write(tc.name, tc.body)); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want one naming %q", err, tc.wantErr)
			}
		})
	}
	if _, err := LoadGoals(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("a missing targets file: no error")
	}

	g, err := LoadGoals(write("lenient.json", `{"ratio": [{"alg": "P-256", "min": 0.80}], "errors": {"max": 2}}`))
	if err != nil {
		t.Fatal(err)
	}
	cell := Cell{Phase: "empty", Alg: "P-256", C: 4, Ratio: 0.85, Raw: &Measure{Errors: 1}, CSRD: &Measure{Errors: 1}}
	for _, tc := range []struct {
		goals      *Goals
		ratio, err string
		met        bool
	}{
		{nil, "(b)/(a) ≥ 0.90 for P-256 at every C", "zero errors", false},
		{g, "(b)/(a) ≥ 0.80 for P-256 at every C", "at most 2 errors", true},
	} {
		r := &Report{Cells: []Cell{cell}, Goals: tc.goals}
		got := map[string]bool{}
		for _, tg := range r.Targets() {
			got[tg.Name] = tg.Met
		}
		for _, name := range []string{tc.ratio, tc.err} {
			if met, ok := got[name]; !ok || met != tc.met {
				t.Errorf("target %q: present %v, met %v; want met %v (targets %v)", name, ok, met, tc.met, got)
			}
		}
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 12: "12", 999: "999", 1000: "1,000", 10000: "10,000", 1234567: "1,234,567"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
