package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPINModeUnderCredentials: with $CREDENTIALS_DIRECTORY set, only files
// in that directory (what systemd passes) may have any mode. hsm.pin_file
// used because the directory holds no hsm-pin, and a pool token's own
// pin_file elsewhere, are checked as without systemd.
func TestPINModeUnderCredentials(t *testing.T) {
	creds := t.TempDir()
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	credFile := func(name, pin string) string {
		p := filepath.Join(creds, name)
		if err := os.WriteFile(p, []byte(pin), 0o444); err != nil {
			t.Fatal(err)
		}
		return p
	}
	loose := write(t, "loose-pin", "4321", 0o644)
	tight := write(t, "tight-pin", "8765", 0o600)
	cases := []struct {
		name    string
		read    func(c *Config) (string, error)
		want    string // "" = refused for its mode
		setCred bool   // creds/hsm-pin exists
	}{
		{"default PIN file without credential, loose", func(c *Config) (string, error) { c.HSM.PINFile = loose; return c.ReadPIN() }, "", false},
		{"default PIN file without credential, tight", func(c *Config) (string, error) { c.HSM.PINFile = tight; return c.ReadPIN() }, "8765", false},
		{"pool token's own file, loose", func(c *Config) (string, error) {
			return c.ReadTokenPIN(Token{TokenLabel: "b", PINFile: loose})
		}, "", true},
		{"pool token's own file, tight", func(c *Config) (string, error) {
			return c.ReadTokenPIN(Token{TokenLabel: "b", PINFile: tight})
		}, "8765", true},
		{"pool token's file passed by systemd", func(c *Config) (string, error) {
			return c.ReadTokenPIN(Token{TokenLabel: "b", PINFile: credFile("hsm-pin-b", "2468")})
		}, "2468", true},
		{"pool token's file beside, not in, the credentials", func(c *Config) (string, error) {
			beside := filepath.Join(filepath.Dir(creds), "beside-pin")
			if err := os.WriteFile(beside, []byte("1111"), 0o644); err != nil {
				t.Fatal(err)
			}
			return c.ReadTokenPIN(Token{TokenLabel: "b", PINFile: creds + "/../beside-pin"})
		}, "", true},
		{"hsm-pin credential", func(c *Config) (string, error) { c.HSM.PINFile = loose; return c.ReadPIN() }, "1357", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(filepath.Join(creds, "hsm-pin"))
			if tc.setCred {
				credFile("hsm-pin", "1357")
			}
			c := Defaults()
			pin, err := tc.read(&c)
			switch {
			case tc.want == "" && (err == nil || !strings.Contains(err.Error(), "chmod 600")):
				t.Errorf("PIN %q, error %v; want refused for its mode", pin, err)
			case tc.want != "" && (err != nil || pin != tc.want):
				t.Errorf("PIN %q, error %v; want %q", pin, err, tc.want)
			}
		})
	}
}

// TestPINFileCheckedAsRead: the mode checked is the mode of what is read.
// A named pipe with mode 0600 passes a check by path, but what is read from
// it is whatever another process writes into it then; csrd opens the path
// once, checks the open file and reads only a regular file.
func TestPINFileCheckedAsRead(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "pin")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		// Blocks until csrd opens the pipe, then feeds it a PIN.
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			_, _ = w.WriteString("9999\n")
			w.Close()
		}
	}()
	c := Defaults()
	c.HSM.PINFile = fifo
	type result struct {
		pin string
		err error
	}
	done := make(chan result, 1)
	go func() {
		pin, err := c.ReadPIN()
		done <- result{pin, err}
	}()
	select {
	case r := <-done:
		if r.err == nil || !strings.Contains(r.err.Error(), "not a regular file") {
			t.Errorf("PIN %q read from a named pipe, error %v; want refused", r.pin, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("reading a named pipe as the PIN file did not return")
	}
}
