package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/csrd/csrd/fixture"
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
			cfg := filepath.Join(t.TempDir(), "csrd.yaml")
			yaml := fmt.Sprintf("hsm:\n  module: %s\n  token_label: %s\n  pin_file: %s\ndatabase: %s\nauth:\n  mode: none\n",
				k.module, k.label, k.pinFile, filepath.Join(t.TempDir(), "csrd.db"))
			if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			if code := run([]string{"token", "probe", "-config", cfg}, &out, &errOut); code != 0 {
				t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
			}
			t.Log(out.String())
			for _, s := range append(k.says, "rounds (generate, sign, verify, destroy)", "ECDSA-P-256  ok") {
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
		})
	}
}
