package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/csrd/csrd/policy"
)

// TestStartRefusesBrokenPolicy: at start-up there is no old policy to keep,
// so a broken file stops csrd, naming the problem, before the token is
// opened.
func TestStartRefusesBrokenPolicy(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("EnrollmentPatterns: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "csrd.yaml")
	text := "hsm:\n  token_label: none\n  pin_file: " + filepath.Join(dir, "missing-pin") + "\ndatabase: " + filepath.Join(dir, "db") + "\npolicy_file: " + pol + "\n"
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"-config", cfg})
	if !errors.Is(err, policy.ErrInvalidFile) || !strings.Contains(err.Error(), "at least one enrollment pattern") {
		t.Fatalf("start with a broken policy: %v", err)
	}
}
