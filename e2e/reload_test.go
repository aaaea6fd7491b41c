package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func policyYAML(curve string) string {
	return `Settings:
  Policies:
    RFCEnforcement: false
    PrimaryKeyAlgorithms: [{KeyType: ECC, Curves: [` + curve + `]}]
DefaultEnrollmentPatternId: 1
EnrollmentPatterns:
  - {Id: 1, Name: ` + curve + ` only, AllowedEnrollmentTypes: 4}
`
}

// TestSIGHUPReloadsPolicy runs csrd as a real process on a SoftHSM token:
// a valid new policy file takes effect on SIGHUP without a restart; a
// broken one is refused with a log line naming the problem, and the policy
// in force keeps deciding. SIGTERM then stops it cleanly.
func TestSIGHUPReloadsPolicy(t *testing.T) {
	fullRunOnly(t, "SIGHUP reloading the policy file or refusing a broken one")
	dir := t.TempDir()
	tok := isolatedToken(t, "csrd-reload-test")
	polPath := filepath.Join(dir, "policy.yaml")
	write := func(text string) string {
		if err := os.WriteFile(polPath, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(text))
		return hex.EncodeToString(sum[:])
	}
	write(policyYAML("P-256"))
	cfgPath := filepath.Join(dir, "csrd.yaml")
	cfg := fmt.Sprintf("listen: 127.0.0.1:0\nhsm:\n  module: %s\n  token_label: %s\n  pin_file: %s\n  max_sessions: 4\ndatabase: %s\npolicy_file: %s\nauth:\n  mode: none\n",
		tok.Module, tok.Label, tok.PINFile, filepath.Join(dir, "csrd.db"), polPath)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(csrdBin, "-config", cfgPath)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+tok.Conf)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		// On success csrd has exited and been waited for; otherwise a
		// child left running would hold a token session.
		if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("killing csrd: %v", err)
		}
	}()
	lines := make(chan map[string]any, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				m = map[string]any{"raw": sc.Text()}
			}
			lines <- m
		}
	}()
	// waitFor returns the first log line with this message.
	waitFor := func(msg string) map[string]any {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for {
			select {
			case m, ok := <-lines:
				if !ok {
					t.Fatalf("csrd exited before logging %q", msg)
				}
				if m["message"] == msg {
					return m
				}
			case <-timeout:
				t.Fatalf("no %q log line within 60s", msg)
			}
		}
	}
	ready := waitFor("csrd ready")
	base := "http://" + ready["listen"].(string) + "/KeyfactorAPI"
	generate := func(length int) (int, string) {
		t.Helper()
		body := fmt.Sprintf(`{"Subject":"CN=reload.example.com","KeyType":"ECC","KeyLength":%d}`, length)
		req, _ := http.NewRequest(http.MethodPost, base+"/CSRGeneration/Generate", strings.NewReader(body))
		req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	expect := func(when string, allowed, refused int) {
		t.Helper()
		if code, body := generate(allowed); code != http.StatusOK {
			t.Errorf("%s: ECC %d: %d %s, want 200", when, allowed, code, body)
		}
		if code, body := generate(refused); code != http.StatusBadRequest || !strings.Contains(body, fmt.Sprintf("ECC curves allowed are P-%d", allowed)) {
			t.Errorf("%s: ECC %d: %d %s, want the policy's refusal", when, refused, code, body)
		}
	}
	expect("first policy", 256, 384)

	shaB := write(policyYAML("P-384"))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if got := waitFor("policy reloaded"); got["policy_sha256"] != shaB {
		t.Fatalf("reloaded %v, want sha256 %s", got, shaB)
	}
	expect("after reload", 384, 256)

	write("EnrollmentPatterns:\n  - {Id: 1, Name: broken, AllowedEnrollmentTypes: 99}\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	refused := waitFor("policy reload refused; the policy in force stays")
	if e, _ := refused["error"].(string); !strings.Contains(e, "AllowedEnrollmentTypes 99") || refused["policy_sha256"] != shaB {
		t.Fatalf("refusal log %v: want the problem named and the old policy in force", refused)
	}
	expect("after a broken file", 384, 256)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor("stopped")
	for range lines { // Wait only after the pipe is drained.
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("csrd exit: %v", err)
	}
}
