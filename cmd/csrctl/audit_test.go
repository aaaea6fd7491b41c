package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// audit verify on a path that holds no database fails and creates nothing:
// a mistyped path or a deleted database is not an empty, intact log.
func TestAuditVerifyMissingDatabase(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{filepath.Join(dir, "csrd.db"), filepath.Join(dir, "var", "lib", "csrd", "csrd.db")} {
		code, out, errOut := runCLI(t, "", "audit", "verify", "-database", path)
		if code != 1 || strings.Contains(out, "OK") || !strings.Contains(errOut, path) || !strings.Contains(errOut, "does not exist") {
			t.Errorf("verify %s: exit %d, stdout %q, stderr %q; want exit 1 naming the missing database", path, code, out, errOut)
		}
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("verify created %s", path)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("verify left %d entries in %s", len(entries), dir)
	}
}

// Every command that opens csrd's database opens an existing one only: with
// the configuration naming a missing database each fails (before logging
// in to the token) and leaves nothing behind.
func TestCommandsNeverCreateTheDatabase(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "state", "csrd.db")
	pinFile := filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte("1234"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "csrd.yaml")
	if err := os.WriteFile(cfg, []byte("hsm:\n  module: /nonexistent/libpkcs11.so\n  token_label: none\n  pin_file: "+pinFile+
		"\ndatabase: "+dbPath+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"audit", "verify", "-config", cfg},
		{"reconcile", "-config", cfg},
		{"pending", "ls", "-config", cfg},
		{"pending", "rm", "-config", cfg, "1"},
		{"generate", "-config", cfg, "-subject", "CN=x", "-key-type", "ECC", "-key-length", "256"},
	} {
		code, _, errOut := runCLI(t, "", args...)
		if code != 1 || !strings.Contains(errOut, dbPath) || !strings.Contains(errOut, "does not exist") {
			t.Errorf("%v: exit %d, stderr %q; want exit 1 naming the missing database", args, code, errOut)
		}
	}
	if _, err := os.Stat(filepath.Dir(dbPath)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a command created %s", filepath.Dir(dbPath))
	}
}
