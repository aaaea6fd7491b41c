package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/store"
)

// TestTokenProbe runs `csrctl token probe` on every token of the matrix:
// it prints the token's profile, makes a key of each type csrd offers
// there, says why it offers no others, and leaves nothing behind.
func TestTokenProbe(t *testing.T) {
	dir := t.TempDir()
	sh, err := fixture.Setup(filepath.Join(dir, "softhsm"), "csrctl-probe")
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.AddToken("csrctl-probe-remote"); err != nil {
		t.Fatal(err)
	}
	srv, err := fixture.StartP11Kit(filepath.Join(dir, "p11kit"), sh.Module, []string{"SOFTHSM2_CONF=" + sh.Conf}, "csrctl-probe-remote")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	for _, kv := range srv.Env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	type kind struct {
		name, module, label, pinFile string
		says, notOffered             []string
	}
	kinds := []kind{
		{"softhsm", sh.Module, "csrctl-probe", sh.PINFile,
			[]string{"SoftHSM v2", "sealing (hybrid ML-DSA seeds, AES-GCM): yes", "Ed448        ok"}, nil},
		{"p11kit", srv.Module, "csrctl-probe-remote", sh.PINFile,
			[]string{"SoftHSM v2", "sealing (hybrid ML-DSA seeds, AES-GCM): no", "ECDSA-P-521  ok"},
			[]string{"Ed25519", "Ed448"}},
	}
	if !testing.Short() {
		tpm, err := fixture.StartTPM(filepath.Join(dir, "tpm"), "csrctl-probe-tpm")
		if err != nil {
			t.Fatal(err)
		}
		defer tpm.Stop()
		for _, kv := range tpm.Env {
			k, v, _ := strings.Cut(kv, "=")
			t.Setenv(k, v)
		}
		kinds = append(kinds, kind{"tpm", tpm.Module, "csrctl-probe-tpm", tpm.PINFile,
			[]string{"RSA-2048     ok", "left out (the token refuses them; they protect nothing): CKA_VERIFY (public), CKA_ENCRYPT (public)",
				"signing: message hashed and signed in the token", "refused: full template: generate key pair: CKR_GENERAL_ERROR"},
			[]string{"RSA-4096", "ECDSA-P-521", "Ed25519", "Ed448"}})
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			cfg, dbPath := filepath.Join(t.TempDir(), "csrd.yaml"), filepath.Join(t.TempDir(), "csrd.db")
			yaml := fmt.Sprintf("hsm:\n  module: %s\n  token_label: %s\n  pin_file: %s\ndatabase: %s\nauth:\n  mode: none\n",
				k.module, k.label, k.pinFile, dbPath)
			if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			// The first kind probes before csrd has made its database:
			// nothing is recorded and no database is made.
			recorded := "profile recorded in " + dbPath + " (first recorded)"
			if k.name == kinds[0].name {
				recorded = "profiles not recorded: no database at " + dbPath
			} else {
				db, err := store.Open(context.Background(), dbPath) // as csrd's first start makes it
				if err != nil {
					t.Fatal(err)
				}
				db.Close()
			}
			var out, errOut bytes.Buffer
			if code := run([]string{"token", "probe", "-config", cfg}, &out, &errOut); code != 0 {
				t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
			}
			t.Log(out.String())
			for _, s := range append(k.says, "rounds (generate, sign, verify, destroy)", "ECDSA-P-256  ok", recorded) {
				if !strings.Contains(out.String(), s) {
					t.Errorf("output does not say %q", s)
				}
			}
			for _, s := range k.notOffered {
				if !strings.Contains(out.String(), fmt.Sprintf("%-12s not offered", s)) {
					t.Errorf("output does not say %s is not offered", s)
				}
			}
			if strings.Contains(out.String(), "FAILED") {
				t.Error("a round failed")
			}
			checkRecorded(t, cfg, dbPath, k.name == kinds[0].name, k.label)
		})
	}
}

// checkRecorded: `token probe -recorded` lists the profile the probe
// recorded, or, without a database, says so without making one.
func checkRecorded(t *testing.T, cfg, dbPath string, none bool, label string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run([]string{"token", "probe", "-recorded", "-config", cfg}, &out, &errOut)
	if none {
		if _, err := os.Stat(dbPath); code == 0 || err == nil {
			t.Errorf("-recorded without a database: exit %d, database made: %v", code, err == nil)
		}
		return
	}
	for _, s := range []string{fmt.Sprintf("token %q serial", label), "by csrctl token probe", fmt.Sprintf(`"label": %q`, label), `"sign_only": true`} {
		if code != 0 || !strings.Contains(out.String(), s) {
			t.Errorf("-recorded: exit %d, output does not say %q:\n%s%s", code, s, out.String(), errOut.String())
		}
	}
}
