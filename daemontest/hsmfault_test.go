package daemontest

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/loadgen"
	softhsmtest "github.com/csrd/csrd/softhsm-test"
)

// isolatedToken makes a token in a SoftHSM config of its own, so a test can
// move its token directory away without touching the other tests' tokens.
func isolatedToken(t *testing.T, label string) *softhsmtest.Token {
	t.Helper()
	tok := &softhsmtest.Token{Dir: filepath.Join(t.TempDir(), "softhsm"), Module: baseTok.Module}
	if err := tok.AddToken(label); err != nil {
		t.Fatal(err)
	}
	return tok.With(label)
}

// faultInstance runs csrd on tok with a quick health check and reconnect
// backoff, so a test sees the outage and the recovery within seconds.
func faultInstance(t *testing.T, tok *softhsmtest.Token) *instance {
	return newInstanceWith(t, instanceOptions{
		Tok: tok,
		HSM: []string{"health_interval: 300ms", "reconnect_max_backoff: 1s"},
		Env: []string{"SOFTHSM2_CONF=" + tok.Conf},
	})
}

// readyz returns the status of GET /readyz.
func readyz(t *testing.T, d *daemon) int {
	t.Helper()
	resp, err := http.Get("http://" + d.Addr + "/readyz")
	if err != nil {
		t.Fatalf("readyz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
		t.Error("readyz 503 without Retry-After")
	}
	return resp.StatusCode
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// moveTokens renames the token directory (away=true) or puts it back. As
// root — which `make test` runs as — permission bits do not stop SoftHSM
// reading the directory, so "unreadable" is made real by taking it away.
func moveTokens(t *testing.T, tok *softhsmtest.Token, away bool) {
	t.Helper()
	from, to := filepath.Join(tok.Dir, "tokens"), filepath.Join(tok.Dir, "tokens.away")
	if !away {
		from, to = to, from
	}
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

// outageChecks: while the token is gone, Generate answers 503 with
// Retry-After and the HSM error code, /readyz is 503, and nothing is made.
func outageChecks(t *testing.T, d *daemon, gen func() loadgen.Answer) {
	t.Helper()
	waitFor(t, 20*time.Second, "readyz 503 after the token went away", func() bool { return readyz(t, d) == http.StatusServiceUnavailable })
	for range 3 {
		a := gen()
		if a.Status != http.StatusServiceUnavailable || a.ErrorCode != api.CodeHSMUnavailable || a.RetryAfter == "" {
			t.Errorf("token gone: %d %s %q (Retry-After %q), want 503 %s", a.Status, a.ErrorCode, a.Message, a.RetryAfter, api.CodeHSMUnavailable)
		}
	}
}

// TestTokenVanishes takes the running daemon's token directory away and
// brings it back: csrd answers 503 and reports not ready while it is gone,
// and serves again by itself when it returns — same process, no restart —
// with every earlier key still usable and nothing half made.
func TestTokenVanishes(t *testing.T) {
	tok := isolatedToken(t, "vanish")
	in := faultInstance(t, tok)
	d := in.start(t)
	defer func() { d.kill() }()
	client := &loadgen.Client{HTTP: &http.Client{Timeout: time.Minute}, Base: d.Base}
	led := newLedger()
	var n int64
	gen := func() loadgen.Answer {
		n++
		a := client.Generate(context.Background(), p256Body(n))
		if a.Err != nil {
			t.Errorf("generate: %v", a.Err)
		}
		if a.Status == http.StatusOK {
			led.ack(t, a.ID, a.CSR)
		}
		return a
	}
	for range 2 {
		if a := gen(); a.Status != http.StatusOK {
			t.Fatalf("before the fault: %d %s", a.Status, a.Message)
		}
	}
	if st := readyz(t, d); st != http.StatusOK {
		t.Fatalf("readyz %d before the fault", st)
	}

	moveTokens(t, tok, true)
	outageChecks(t, d, gen)
	moveTokens(t, tok, false)
	waitFor(t, 30*time.Second, "readyz 200 after the token came back", func() bool { return readyz(t, d) == http.StatusOK })
	for range 3 {
		if a := gen(); a.Status != http.StatusOK {
			t.Errorf("token back: %d %s %q", a.Status, a.ErrorCode, a.Message)
		}
	}
	select {
	case <-d.exited:
		t.Fatal("csrd exited during the outage")
	default:
	}
	if d.logCount("hsm: token reconnected") == 0 {
		t.Error("no reconnect logged")
	}
	if err := d.stop(20 * time.Second); err != nil {
		t.Errorf("clean stop: %v", err)
	}
	d.checkNoRace(t)
	d = in.start(t)
	cen := checkInvariants(t, in, led)
	t.Logf("after the outage: records %v, %d csrd objects", cen.Records, cen.Objects)
}

// TestPINRotated changes the token's user PIN while csrd is logged in, then
// makes csrd re-login (the token goes away and comes back): the old PIN is
// refused once, csrd says so and stays unready without retrying it (every
// failed login counts towards locking the token), and as soon as the PIN
// file holds the new PIN it logs in and serves — no restart. No PIN ever
// appears in the log.
func TestPINRotated(t *testing.T) {
	if _, err := exec.LookPath("pkcs11-tool"); err != nil {
		t.Fatalf("pkcs11-tool (package opensc, in the Makefile's DEPS) is needed to change the PIN: %v", err)
	}
	tok := isolatedToken(t, "pinrot")
	oldPIN, newPIN := tok.PIN, "rotated-"+tok.PIN[:8]
	in := faultInstance(t, tok)
	d := in.start(t)
	defer func() { d.kill() }()
	client := &loadgen.Client{HTTP: &http.Client{Timeout: time.Minute}, Base: d.Base}
	var n int64
	gen := func() loadgen.Answer {
		n++
		a := client.Generate(context.Background(), p256Body(n))
		if a.Err != nil {
			t.Errorf("generate: %v", a.Err)
		}
		return a
	}
	if a := gen(); a.Status != http.StatusOK {
		t.Fatalf("before the change: %d %s", a.Status, a.Message)
	}

	// The operator rotates the PIN on the token (a test token: the PINs may
	// go on argv) but has not updated csrd's PIN file yet.
	cmd := exec.Command("pkcs11-tool", "--module", tok.Module, "--token-label", tok.Label,
		"--login", "--pin", oldPIN, "--change-pin", "--new-pin", newPIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+tok.Conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("change the PIN: %v\n%s", err, out)
	}
	if a := gen(); a.Status != http.StatusOK {
		t.Errorf("still logged in after the PIN change: %d %s", a.Status, a.Message)
	}

	moveTokens(t, tok, true)
	outageChecks(t, d, gen)
	moveTokens(t, tok, false)
	const refused = "hsm: token refused the PIN on re-login; waiting for a different PIN in the PIN file"
	waitFor(t, 30*time.Second, "the refused PIN logged", func() bool { return d.logCount(refused) > 0 })
	if st := readyz(t, d); st != http.StatusServiceUnavailable {
		t.Errorf("readyz %d with the PIN refused, want 503", st)
	}
	if a := gen(); a.Status != http.StatusServiceUnavailable {
		t.Errorf("PIN refused: %d %s, want 503", a.Status, a.Message)
	}

	tmp := tok.PINFile + ".new"
	if err := os.WriteFile(tmp, []byte(newPIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, tok.PINFile); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "readyz 200 after the PIN file was fixed", func() bool { return readyz(t, d) == http.StatusOK })
	if a := gen(); a.Status != http.StatusOK {
		t.Errorf("after the PIN file was fixed: %d %s %q", a.Status, a.ErrorCode, a.Message)
	}
	if got := d.logCount(refused); got != 1 {
		t.Errorf("the refused PIN was tried %d times, want once", got)
	}
	for _, l := range d.logLines() {
		if strings.Contains(l, oldPIN) || strings.Contains(l, newPIN) {
			t.Fatalf("a PIN appears in the log: %s", l)
		}
	}
	if err := d.stop(20 * time.Second); err != nil {
		t.Errorf("clean stop: %v", err)
	}
	d.checkNoRace(t)
}

// TestHSMMisconfiguredAtStart: csrd refuses to start on a token it cannot
// use, with exit status 1 and an error that says what is wrong (and never
// the PIN). systemd's Restart=on-failure then retries until it is fixed.
func TestHSMMisconfiguredAtStart(t *testing.T) {
	tok := isolatedToken(t, "misconf")
	wrongPIN := filepath.Join(t.TempDir(), "wrong-pin")
	if err := os.WriteFile(wrongPIN, []byte("not-the-pin-123"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(o *softhsmtest.Token)
		want string // the start-up error names this
	}{
		{"module path wrong", func(o *softhsmtest.Token) { o.Module = "/nonexistent/libpkcs11-vendor.so" }, "/nonexistent/libpkcs11-vendor.so"},
		{"no such token", func(o *softhsmtest.Token) { o.Label = "no-such-token" }, "token not found"},
		{"PIN refused", func(o *softhsmtest.Token) { o.PINFile = wrongPIN }, "login failed"},
		{"PIN file missing", func(o *softhsmtest.Token) { o.PINFile = wrongPIN + ".gone" }, "PIN file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := *tok
			tt.edit(&bad)
			in := newInstanceWith(t, instanceOptions{Tok: &bad, Env: []string{"SOFTHSM2_CONF=" + tok.Conf}})
			d, err := in.spawn()
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-d.exited:
			case <-time.After(startTimeout):
				d.kill()
				t.Fatal("csrd kept running on an unusable token")
			}
			var ee *exec.ExitError
			if !errors.As(d.waitErr, &ee) || ee.ExitCode() != 1 {
				t.Errorf("exit %v, want status 1", d.waitErr)
			}
			out := d.tail(3)
			t.Logf("%s: %s", tt.name, d.tail(1))
			if !strings.Contains(out, tt.want) {
				t.Errorf("start-up error does not say %q:\n%s", tt.want, out)
			}
			for _, l := range d.logLines() {
				if strings.Contains(l, tok.PIN) || strings.Contains(l, "not-the-pin-123") {
					t.Errorf("a PIN appears in the output: %s", l)
				}
			}
		})
	}
}
