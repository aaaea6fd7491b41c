// Package softhsmtest creates throw-away SoftHSM v2 tokens for tests.
//
// It owns nothing but test fixtures: a private SOFTHSM2_CONF, token directory and
// random PINs under a directory the caller chooses (and removes), built by
// init-token.sh beside this file so that tests, the Makefile and CI make tokens
// the same way. It is meant for TestMain, where no *testing.T exists, so it returns
// errors instead of failing a test. It never touches the system-wide
// /etc/softhsm configuration.
package softhsmtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Token describes a SoftHSM token made by Setup or AddToken.
type Token struct {
	Dir     string // directory holding the config, token store and PIN files
	Conf    string // SOFTHSM2_CONF path
	Module  string // path of libsofthsm2.so
	Label   string // token label
	PIN     string // user PIN
	PINFile string // file holding the user PIN (mode 0600, no newline)
}

// modulePaths are where Debian/Ubuntu and source installs put the SoftHSM module.
var modulePaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
}

// ErrNoSoftHSM is returned when SoftHSM (module or softhsm2-util) is not installed.
var ErrNoSoftHSM = errors.New("softhsmtest: SoftHSM not installed (run `make deps`)")

// ModulePath returns the path of the installed SoftHSM PKCS#11 module.
func ModulePath() (string, error) {
	for _, p := range modulePaths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: libsofthsm2.so not in %s", ErrNoSoftHSM, strings.Join(modulePaths, ", "))
}

// Setup initialises a token labelled label in dir (created if needed) with
// init-token.sh and points SOFTHSM2_CONF at its config for this process, so the
// module loaded afterwards sees only this test's tokens. Running it again on the
// same dir and label reuses the token.
func Setup(dir, label string) (*Token, error) {
	module, err := ModulePath()
	if err != nil {
		return nil, err
	}
	t := &Token{Dir: dir, Module: module}
	if err := t.AddToken(label); err != nil {
		return nil, err
	}
	t.Label = label
	if err := os.Setenv("SOFTHSM2_CONF", t.Conf); err != nil {
		return nil, fmt.Errorf("softhsmtest: %w", err)
	}
	return t, nil
}

// AddToken initialises another token labelled label in the same config (and with
// the same PINs) as t, for multi-token tests. t itself keeps describing its own
// token; use With to get a Token for the new label.
func (t *Token) AddToken(label string) error {
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		return fmt.Errorf("%w: %v", ErrNoSoftHSM, err)
	}
	script, err := scriptPath()
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(t.Dir)
	if err != nil {
		return fmt.Errorf("softhsmtest: %w", err)
	}
	cmd := exec.Command("bash", script, dir, label)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if _, err := cmd.Output(); err != nil {
		return fmt.Errorf("softhsmtest: init-token.sh %s %s: %w: %s", dir, label, err, strings.TrimSpace(stderr.String()))
	}
	pinFile := filepath.Join(dir, "hsm-pin")
	pin, err := os.ReadFile(pinFile)
	if err != nil {
		return fmt.Errorf("softhsmtest: %w", err)
	}
	t.Dir, t.Conf, t.PINFile, t.PIN = dir, filepath.Join(dir, "softhsm2.conf"), pinFile, string(pin)
	return nil
}

// With returns a copy of t describing the token labelled label in the same config.
func (t *Token) With(label string) *Token {
	c := *t
	c.Label = label
	return &c
}

// scriptPath finds init-token.sh next to this source file; tests run with the
// package directory as cwd, which is not this directory.
func scriptPath() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("softhsmtest: cannot locate init-token.sh: runtime.Caller failed")
	}
	p := filepath.Join(filepath.Dir(file), "init-token.sh")
	if _, err := os.Stat(p); err != nil {
		// Built with -trimpath (bin/csrd-bench): the path is module-relative;
		// commands run from the repository root.
		if _, err2 := os.Stat(filepath.Join("softhsm-test", "init-token.sh")); err2 == nil {
			return filepath.Abs(filepath.Join("softhsm-test", "init-token.sh"))
		}
		return "", fmt.Errorf("softhsmtest: %w", err)
	}
	return p, nil
}

// StoreDir returns the object-store directory of the token labelled label in
// t's config (SoftHSM names it by a UUID; the label is in its token.object).
// Tests move or lock it to make the token fail as if it had been pulled.
func (t *Token) StoreDir(label string) (string, error) {
	dirs, err := filepath.Glob(filepath.Join(t.Dir, "tokens", "*", "token.object"))
	if err != nil {
		return "", fmt.Errorf("softhsmtest: %w", err)
	}
	// CK_TOKEN_INFO.label is 32 bytes, blank-padded.
	want := []byte(fmt.Sprintf("%-32s", label))
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("softhsmtest: %w", err)
		}
		if bytes.Contains(b, want) {
			return filepath.Dir(f), nil
		}
	}
	return "", fmt.Errorf("softhsmtest: no token labelled %q under %s", label, t.Dir)
}
