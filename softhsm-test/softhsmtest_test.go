package softhsmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestSetup(t *testing.T) {
	if _, err := ModulePath(); err != nil {
		t.Skip(err)
	}
	dir := filepath.Join(t.TempDir(), "hsm")
	t.Setenv("SOFTHSM2_CONF", "") // restored after the test; Setup overrides it

	tok, err := Setup(dir, "csrd-a")
	if err != nil {
		t.Fatal(err)
	}
	if got := os.Getenv("SOFTHSM2_CONF"); got != tok.Conf {
		t.Errorf("SOFTHSM2_CONF = %q, want %q", got, tok.Conf)
	}
	if len(tok.PIN) < 16 || strings.ContainsAny(tok.PIN, " \n") {
		t.Errorf("PIN has %d characters or whitespace, want 16+ alphanumerics", len(tok.PIN))
	}

	for _, f := range []struct {
		path string
		mode os.FileMode
	}{
		{dir, 0o700 | os.ModeDir},
		{tok.PINFile, 0o600},
		{filepath.Join(dir, "so-pin"), 0o600},
	} {
		fi, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != f.mode {
			t.Errorf("%s: mode %v, want %v", f.path, fi.Mode(), f.mode)
		}
	}
	conf, err := os.ReadFile(tok.Conf)
	if err != nil {
		t.Fatal(err)
	}
	if want := "directories.tokendir = " + filepath.Join(dir, "tokens") + "\n"; !strings.Contains(string(conf), want) {
		t.Errorf("config lacks %q:\n%s", want, conf)
	}

	// Idempotent: same label again keeps the PIN and the token.
	again, err := Setup(dir, "csrd-a")
	if err != nil {
		t.Fatal(err)
	}
	if again.PIN != tok.PIN {
		t.Error("second Setup changed the PIN")
	}
	if err := tok.AddToken("csrd-b"); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command("softhsm2-util", "--show-slots").Output()
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]int{}
	for _, line := range strings.Split(string(out), "\n") {
		if l, ok := strings.CutPrefix(strings.TrimSpace(line), "Label:"); ok {
			labels[strings.TrimSpace(l)]++
		}
	}
	for _, l := range []string{"csrd-a", "csrd-b"} {
		if labels[l] != 1 {
			t.Errorf("token %q appears %d times, want 1 (labels %v)", l, labels[l], labels)
		}
	}
}
