package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/store"
)

// newTokenEnv makes what csrctl's key commands need, in t's temp dir: a
// SoftHSM token labelled label, an empty csrd database and a configuration
// naming both. It returns the directory, the token, the database's path
// and the configuration's.
func newTokenEnv(t *testing.T, label string) (dir string, tok *fixture.Token, dbPath, cfg string) {
	t.Helper()
	dir = t.TempDir()
	tok, err := fixture.Setup(filepath.Join(dir, "softhsm"), label)
	if err != nil {
		t.Fatal(err)
	}
	dbPath = filepath.Join(dir, "csrd.db")
	db, err := store.Open(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	cfg = filepath.Join(dir, "csrd.yaml")
	yaml := fmt.Sprintf("hsm:\n  module: %s\n  token_label: %s\n  pin_file: %s\ndatabase: %s\n", tok.Module, tok.Label, tok.PINFile, dbPath)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, tok, dbPath, cfg
}
