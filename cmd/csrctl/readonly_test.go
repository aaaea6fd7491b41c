package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/store"
)

// TestReadOnlyCommandsNeedNoToken runs the commands that only read files
// with a configuration whose PKCS#11 module does not exist and without
// SOFTHSM2_CONF: they must not open the token. A command that needs the
// token fails with the same configuration, so the token really is out of
// reach.
func TestReadOnlyCommandsNeedNoToken(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv("SOFTHSM2_CONF", "")
	os.Unsetenv("SOFTHSM2_CONF") // t.Setenv restores it afterwards

	dbPath := filepath.Join(dir, "csrd.db")
	db, err := store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	id, err := db.BeginKey(ctx, &store.KeyRecord{KeyID: []byte{1, 2}, KeyType: "ECC", Curve: "P-256", Subject: "CN=readonly.example.com"},
		"csrd-")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("spki"))
	const csrPEM = "-----BEGIN CERTIFICATE REQUEST-----\nMA==\n-----END CERTIFICATE REQUEST-----\n"
	if err := db.CompleteKey(ctx, id, csrPEM, sum[:], nil); err != nil {
		t.Fatal(err)
	}
	db.Close()
	pinFile := filepath.Join(dir, "hsm-pin")
	if err := os.WriteFile(pinFile, []byte("123456"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "csrd.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("hsm:\n  module: %s\n  token_label: nowhere\n  pin_file: %s\ndatabase: %s\n",
		filepath.Join(dir, "no-such-pkcs11-module.so"), pinFile, dbPath)), 0o600); err != nil {
		t.Fatal(err)
	}

	ids := fmt.Sprint(id)
	cases := []struct {
		name string
		args []string
		code int
		want string // in stdout
	}{
		{"pending ls", []string{"pending", "ls", "-config", cfg}, 0, ids + "  "},
		{"pending ls -subject", []string{"pending", "ls", "-config", cfg, "-subject", "readonly"}, 0, "Subject: CN=readonly.example.com"},
		{"pending show", []string{"pending", "show", "-config", cfg, ids}, 0, csrPEM},
		{"audit verify", []string{"audit", "verify", "-config", cfg}, 0, "audit log OK"},
		{"policy check", []string{"policy", "check", "../../policy.example.yaml"}, 0, ": OK (sha256 "},
		{"version", []string{"version"}, 0, "csrctl "},
		// The token is out of reach indeed.
		{"pending rm", []string{"pending", "rm", "-config", cfg, ids}, 1, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(tc.args, &out, &errOut); code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out.String(), errOut.String())
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Errorf("stdout lacks %q:\n%s", tc.want, out.String())
			}
			if tc.code != 0 && !strings.Contains(errOut.String(), "module") {
				t.Errorf("pending rm did not fail on the module: %s", errOut.String())
			}
		})
	}
}

// TestSoftHSMHint: a token command that SoftHSM cannot find the token for
// says where SoftHSM looked and names the softhsm2.conf beside the PIN
// file (the layout `make dev-token` makes); with that SOFTHSM2_CONF it
// works.
func TestSoftHSMHint(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	tok, err := fixture.Setup(filepath.Join(dir, "dev"), "csrctl-hint")
	if err != nil {
		t.Fatal(err)
	}
	other, err := fixture.Setup(filepath.Join(dir, "other"), "csrctl-other")
	if err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dir, "csrd.db")
	db, err := store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	cfg := filepath.Join(dir, "csrd.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("hsm:\n  module: %s\n  token_label: %s\n  pin_file: %s\ndatabase: %s\n",
		tok.Module, tok.Label, tok.PINFile, dbPath)), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Setenv("SOFTHSM2_CONF", other.Conf) // holds another token only
	var out, errOut bytes.Buffer
	if code := run([]string{"reconcile", "-config", cfg}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"token not found", "SoftHSM looked in SOFTHSM2_CONF=" + other.Conf,
		"SOFTHSM2_CONF=" + tok.Conf + " csrctl"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut.String())
		}
	}

	t.Setenv("SOFTHSM2_CONF", tok.Conf)
	out.Reset()
	errOut.Reset()
	if code := run([]string{"reconcile", "-config", cfg}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "token and database agree") {
		t.Fatalf("with the hinted SOFTHSM2_CONF: exit %d\n%s%s", code, out.String(), errOut.String())
	}
}

// TestWithSoftHSMHint covers the hint's cases without a token, including
// SOFTHSM2_CONF unset (which would make SoftHSM read the system's tokens).
func TestWithSoftHSMHint(t *testing.T) {
	dir := t.TempDir()
	devPIN := filepath.Join(dir, "hsm-pin") // beside a softhsm2.conf
	if err := os.WriteFile(filepath.Join(dir, "softhsm2.conf"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	lonePIN := filepath.Join(dir, "elsewhere", "hsm-pin")
	notFound := fmt.Errorf("hsm: open: %w: no token labelled \"csrd-dev\"", hsm.ErrTokenNotFound)
	const softhsm = "/usr/lib/softhsm/libsofthsm2.so"
	cases := []struct {
		name    string
		err     error
		module  string
		pinFile string
		env     *string
		want    []string // empty: err unchanged
	}{
		{"unset, dev layout", notFound, softhsm, devPIN, nil,
			[]string{"SOFTHSM2_CONF is not set", "SOFTHSM2_CONF=" + filepath.Join(dir, "softhsm2.conf") + " csrctl"}},
		{"set elsewhere, dev layout", notFound, softhsm, devPIN, ptr("/srv/softhsm2.conf"),
			[]string{"SoftHSM looked in SOFTHSM2_CONF=/srv/softhsm2.conf", "beside the PIN file"}},
		{"unset, no conf beside the PIN", notFound, softhsm, lonePIN, nil,
			[]string{"SOFTHSM2_CONF is not set", "Set SOFTHSM2_CONF to the softhsm2.conf that holds the token."}},
		{"another HSM", notFound, "/opt/vendor/libcknfast.so", devPIN, nil, nil},
		{"another failure", fmt.Errorf("hsm: open: %w", hsm.ErrLogin), softhsm, devPIN, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SOFTHSM2_CONF", "")
			if tc.env == nil {
				os.Unsetenv("SOFTHSM2_CONF")
			} else {
				t.Setenv("SOFTHSM2_CONF", *tc.env)
			}
			cfg := config.Defaults()
			cfg.HSM.Module, cfg.HSM.PINFile = tc.module, tc.pinFile
			got := withSoftHSMHint(tc.err, &cfg)
			if !errors.Is(got, tc.err) {
				t.Fatalf("the hint lost the error: %v", got)
			}
			if len(tc.want) == 0 && got.Error() != tc.err.Error() {
				t.Errorf("hint where none applies: %v", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got.Error(), w) {
					t.Errorf("%q lacks %q", got, w)
				}
			}
		})
	}
}

func ptr(s string) *string { return &s }
