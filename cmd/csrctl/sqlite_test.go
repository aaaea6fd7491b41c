package main

import (
	"fmt"
	"os/exec"
)

// sqlite runs one statement with the sqlite3 CLI (package sqlite3, in the
// Makefile's DEPS).
func sqlite(db, q string) error {
	out, err := exec.Command("sqlite3", db, q).CombinedOutput()
	if err != nil {
		return fmt.Errorf("sqlite3 %q: %v: %s", q, err, out)
	}
	return nil
}
