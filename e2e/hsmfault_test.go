package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/store"
	"github.com/csrd/csrd/tools/loadgen"
)

// isolatedToken makes a token in a SoftHSM config of its own, so a test can
// move its token directory away without touching the other tests' tokens.
func isolatedToken(t *testing.T, label string) *fixture.Token {
	t.Helper()
	tok := &fixture.Token{Dir: filepath.Join(t.TempDir(), "softhsm"), Module: baseTok.Module}
	if err := tok.AddToken(label); err != nil {
		t.Fatal(err)
	}
	return tok.With(label)
}

// faultInstance runs csrd on tok with a quick health check and reconnect
// backoff, so a test sees the outage and the recovery within seconds.
func faultInstance(t *testing.T, tok *fixture.Token) *instance {
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
func moveTokens(t *testing.T, tok *fixture.Token, away bool) {
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
	fullRunOnly(t, "a token taken away and brought back under a running daemon")
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
	fullRunOnly(t, "a PIN changed under a running daemon, refused once and never logged")
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

// readyzBody returns the status and decoded body of GET /readyz.
func readyzBody(t *testing.T, d *daemon) (int, readyzAnswer) {
	t.Helper()
	resp, err := http.Get("http://" + d.Addr + "/readyz")
	if err != nil {
		t.Fatalf("readyz: %v", err)
	}
	defer resp.Body.Close()
	var a readyzAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatalf("readyz body: %v", err)
	}
	if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
		t.Error("readyz 503 without Retry-After")
	}
	return resp.StatusCode, a
}

type readyzAnswer struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
	Tokens map[string]string `json:"tokens"`
}

// writePIN replaces a PIN file the way an operator's tooling should: a
// complete file renamed into place.
func writePIN(t *testing.T, path, pin string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(pin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// noPINInLog fails if any of pins appears in d's output.
func noPINInLog(t *testing.T, d *daemon, pins ...string) {
	t.Helper()
	for _, l := range d.logLines() {
		for _, p := range pins {
			if strings.Contains(l, p) {
				t.Fatalf("a PIN appears in the output: %s", l)
			}
		}
	}
}

// TestHSMMisconfiguredAtStart: a token csrd cannot use at start-up does not
// stop it. It listens, /healthz is 200, /readyz is 503 naming the token and
// why, Generate is 503 with Retry-After and a message saying the same; once
// the fault is fixed in place — the module appears, the token is
// initialised, the PIN file is written or corrected — the same process
// connects, reconciles and serves, without a restart. A refused PIN is
// tried once only, and no PIN is ever logged.
func TestHSMMisconfiguredAtStart(t *testing.T) {
	fullRunOnly(t, "an HSM broken at start and fixed in place")
	const wrong = "not-the-pin-123"
	tests := []struct {
		name  string
		fault func(t *testing.T, tok, bad *fixture.Token)
		why   string // /readyz's phrase for the token
		fix   func(t *testing.T, tok, bad *fixture.Token)
	}{
		{"module path wrong",
			func(t *testing.T, tok, bad *fixture.Token) {
				bad.Module = filepath.Join(t.TempDir(), "libpkcs11-vendor.so")
			},
			"PKCS#11 module cannot be loaded",
			func(t *testing.T, tok, bad *fixture.Token) {
				if err := os.Symlink(tok.Module, bad.Module); err != nil {
					t.Fatal(err)
				}
			}},
		{"no such token",
			func(t *testing.T, tok, bad *fixture.Token) { bad.Label = "late-token" },
			"no token with this label found",
			func(t *testing.T, tok, bad *fixture.Token) {
				if err := tok.AddToken(bad.Label); err != nil {
					t.Fatal(err)
				}
			}},
		{"PIN refused",
			func(t *testing.T, tok, bad *fixture.Token) {
				bad.PINFile = filepath.Join(t.TempDir(), "pin")
				writePIN(t, bad.PINFile, wrong)
			},
			"PIN refused; waiting for a different PIN in the PIN file",
			func(t *testing.T, tok, bad *fixture.Token) { writePIN(t, bad.PINFile, tok.PIN) }},
		{"PIN file missing",
			func(t *testing.T, tok, bad *fixture.Token) { bad.PINFile = filepath.Join(t.TempDir(), "pin") },
			"PIN file missing, unreadable or empty",
			func(t *testing.T, tok, bad *fixture.Token) { writePIN(t, bad.PINFile, tok.PIN) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := isolatedToken(t, "misconf")
			bad := *tok
			tt.fault(t, tok, &bad)
			in := faultInstance(t, &bad)
			d, err := in.spawn()
			if err != nil {
				t.Fatal(err)
			}
			defer func() { d.kill() }()
			if err := d.waitListening(startTimeout); err != nil {
				t.Fatalf("csrd did not come up on a broken HSM: %v\n%s", err, d.tail(20))
			}
			if d.logCount(listeningMsg) != 1 {
				t.Errorf("start-up line is not %q:\n%s", listeningMsg, d.tail(5))
			}
			pid := d.Pid()

			waitFor(t, 10*time.Second, "readyz naming the fault", func() bool {
				_, a := readyzBody(t, d)
				return a.Tokens[bad.Label] == tt.why
			})
			st, a := readyzBody(t, d)
			if st != http.StatusServiceUnavailable || a.Checks["hsm"] != "failing" {
				t.Errorf("readyz while broken: %d %+v, want 503 with hsm failing", st, a)
			}
			if resp, err := http.Get("http://" + d.Addr + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("healthz while broken: %v %v (the process is up)", resp, err)
			} else {
				resp.Body.Close()
			}
			client := &loadgen.Client{HTTP: &http.Client{Timeout: time.Minute}, Base: d.Base}
			g := client.Generate(context.Background(), p256Body(1))
			if g.Status != http.StatusServiceUnavailable || g.ErrorCode != api.CodeHSMUnavailable || g.RetryAfter == "" ||
				!strings.Contains(g.Message, bad.Label) || !strings.Contains(g.Message, tt.why) {
				t.Errorf("Generate while broken: %d %s %q (Retry-After %q), want 503 %s naming %q and %q",
					g.Status, g.ErrorCode, g.Message, g.RetryAfter, api.CodeHSMUnavailable, bad.Label, tt.why)
			}

			t.Logf("%s: readyz %+v; Generate 503 %q", tt.name, a.Tokens, g.Message)
			tt.fix(t, tok, &bad)
			waitFor(t, 30*time.Second, "readyz 200 after the fix", func() bool {
				st, _ := readyzBody(t, d)
				return st == http.StatusOK
			})
			if g := client.Generate(context.Background(), p256Body(2)); g.Status != http.StatusOK {
				t.Errorf("Generate after the fix: %d %s %q", g.Status, g.ErrorCode, g.Message)
			}
			select {
			case <-d.exited:
				t.Fatal("csrd exited")
			default:
			}
			if d.Pid() != pid {
				t.Error("csrd was restarted")
			}
			if d.logCount("token reconciled and admitted to the pool") != 1 {
				t.Error("the token was not reconciled on admission")
			}
			if tt.name == "PIN refused" {
				if n := d.logCount("hsm: token refused the PIN; waiting for a different PIN in the PIN file"); n != 1 {
					t.Errorf("the wrong PIN was tried %d times, want once", n)
				}
			}
			noPINInLog(t, d, tok.PIN, wrong)
			if err := d.stop(20 * time.Second); err != nil {
				t.Errorf("clean stop: %v", err)
			}
			d.checkNoRace(t)
		})
	}
}

// TestPoolTokenLateAtStart: of two pooled tokens, one cannot be opened at
// start (its PIN file is not there yet). csrd serves from the other at
// once, reports the missing one in /readyz, and admits it — reconciled
// first — as soon as its PIN file appears; keys land on it afterwards.
//
// The late token is present but not logged in: SoftHSM only sees tokens
// added to its directory when the module is initialised again, which a
// pool sharing the module with a working token cannot do (see README).
func TestPoolTokenLateAtStart(t *testing.T) {
	fullRunOnly(t, "a pool token admitted once its PIN file appears after start")
	tok := isolatedToken(t, "pool-a")
	if err := tok.AddToken("pool-b"); err != nil {
		t.Fatal(err)
	}
	latePIN := filepath.Join(t.TempDir(), "pin-b")
	in := faultInstance(t, tok)
	cfg, err := os.ReadFile(in.Config)
	if err != nil {
		t.Fatal(err)
	}
	pool := fmt.Sprintf("  tokens:\n    - token_label: pool-a\n    - token_label: pool-b\n      pin_file: %s\n", latePIN)
	text := strings.Replace(string(cfg), "  token_label: pool-a\n", pool, 1)
	if text == string(cfg) {
		t.Fatal("config has no token_label line to replace")
	}
	if err := os.WriteFile(in.Config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := in.spawn()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { d.kill() }()
	if err := d.waitListening(startTimeout); err != nil {
		t.Fatalf("csrd did not come up: %v\n%s", err, d.tail(20))
	}
	client := &loadgen.Client{HTTP: &http.Client{Timeout: time.Minute}, Base: d.Base}
	var n int64
	gen := func() {
		t.Helper()
		n++
		if g := client.Generate(context.Background(), p256Body(n)); g.Status != http.StatusOK {
			t.Fatalf("Generate %d: %d %s %q", n, g.Status, g.ErrorCode, g.Message)
		}
	}
	for range 3 {
		gen()
	}
	st, a := readyzBody(t, d)
	if st != http.StatusOK || a.Tokens["pool-a"] != "ok" || a.Tokens["pool-b"] != "PIN file missing, unreadable or empty" {
		t.Errorf("readyz with pool-b waiting: %d %+v", st, a)
	}

	writePIN(t, latePIN, tok.PIN)
	if err := d.waitReady(30 * time.Second); err != nil {
		t.Fatalf("pool-b not admitted: %v\n%s", err, d.tail(20))
	}
	if _, a := readyzBody(t, d); a.Tokens["pool-b"] != "ok" {
		t.Errorf("csrd ready but readyz says pool-b %q", a.Tokens["pool-b"])
	}
	for range 6 {
		gen()
	}
	noPINInLog(t, d, tok.PIN)
	if err := d.stop(20 * time.Second); err != nil {
		t.Errorf("clean stop: %v", err)
	}
	d.checkNoRace(t)

	db, err := store.Open(context.Background(), in.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs, err := db.ListByState(context.Background(), store.StatePending)
	if err != nil {
		t.Fatal(err)
	}
	on := map[string][]int64{}
	for _, r := range recs {
		on[r.TokenLabel] = append(on[r.TokenLabel], r.ID)
	}
	if len(recs) != 9 || len(on["pool-b"]) == 0 {
		t.Fatalf("records by token %v, want 9 with some on pool-b", on)
	}
	for _, id := range on["pool-b"] {
		if id <= 3 {
			t.Errorf("record %d landed on pool-b before it was admitted", id)
		}
	}
	t.Logf("records by token: %v", on)
}
