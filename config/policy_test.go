package config

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/csrd/csrd/policy"
)

func TestLoadPolicy(t *testing.T) {
	cfgPath := write(t, "csrd.yaml", "policy_file: /etc/csrd/policy.yaml\n", 0o600)
	c, err := Load(cfgPath)
	if err != nil || c.PolicyFile != "/etc/csrd/policy.yaml" {
		t.Fatalf("policy_file not read: %q %v", c.PolicyFile, err)
	}

	if e, err := LoadPolicy(""); err != nil || !e.Builtin() || e.Info().Source != policy.BuiltinSource {
		t.Fatalf("no policy_file must mean the built-in default: %v", err)
	}
	good := write(t, "policy.yaml", "EnrollmentPatterns:\n  - {Id: 2, Name: p, AllowedEnrollmentTypes: 4}\n", 0o600)
	e, err := (&Config{PolicyFile: good}).LoadPolicy()
	if err != nil || e.Builtin() || e.Info().Source != good || len(e.Info().SHA256) != 64 || e.Info().LoadedAt.IsZero() {
		t.Fatalf("load %s: %v", good, err)
	}
	if _, err := LoadPolicy(good + ".missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	bad := write(t, "bad.yaml", "EnrollmentPatterns: 3\n", 0o600)
	if _, err := LoadPolicy(bad); !errors.Is(err, policy.ErrInvalidFile) {
		t.Fatalf("broken file: %v", err)
	}
}
