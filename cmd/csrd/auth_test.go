package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/csrd/csrd/auth"
)

// Authentication is never off by accident: a missing or broken auth file
// stops the start, before the token or database is touched, with a message
// that says what to do.
func TestStartRefusesMissingOrBrokenAuthFile(t *testing.T) {
	dir := t.TempDir()
	authFile := filepath.Join(dir, "auth.yaml")
	cfg := filepath.Join(dir, "csrd.yaml")
	text := "hsm:\n  token_label: none\n  pin_file: " + filepath.Join(dir, "missing-pin") + "\ndatabase: " +
		filepath.Join(dir, "db") + "\nauth:\n  file: " + authFile + "\n"
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"-config", cfg})
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "csrctl user add") {
		t.Fatalf("missing auth file: %v", err)
	}
	if err := os.WriteFile(authFile, []byte("users: [{name: a, password_hash: plain, operations: [generate]}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-config", cfg}); !errors.Is(err, auth.ErrInvalidFile) {
		t.Fatalf("broken auth file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the database was created before the auth file was checked: %v", err)
	}
}
