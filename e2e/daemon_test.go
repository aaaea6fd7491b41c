package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
)

// instance describes one csrd deployment: its directory, config and
// database survive restarts, as they would on an appliance.
type instance struct {
	Tok      *fixture.Token // the token it runs on
	View     *hsm.Token     // the test's own session on that token
	Dir      string
	Config   string
	Database string
	// Env is added to the daemon's environment (e.g. another SOFTHSM2_CONF).
	Env []string
	// starts counts daemons started, to name their log files.
	starts int
}

// newInstance makes a token labelled tokenLabel and writes a config for a
// daemon on it with its database at dbPath ("" puts it in a temp dir).
// extra YAML lines are appended.
func newInstance(t testing.TB, tokenLabel, dbPath string, extra ...string) *instance {
	t.Helper()
	tok, view := newToken(t, tokenLabel)
	return newInstanceWith(t, instanceOptions{Tok: tok, View: view, Database: dbPath, Extra: extra})
}

// instanceOptions are the parts of an instance a test may choose.
type instanceOptions struct {
	Tok      *fixture.Token
	View     *hsm.Token // nil when the token is in another SoftHSM config
	Database string     // "" puts it in the instance's temp dir
	HSM      []string   // extra lines under hsm:, e.g. "health_interval: 500ms"
	Extra    []string   // extra top-level lines
	Env      []string   // added to the daemon's environment
	Listen   string     // "" is 127.0.0.1:0, a port of the kernel's choice
}

func newInstanceWith(t testing.TB, o instanceOptions) *instance {
	t.Helper()
	dir := t.TempDir()
	if o.Database == "" {
		o.Database = filepath.Join(dir, "csrd.db")
	}
	in := &instance{Tok: o.Tok, View: o.View, Dir: dir, Config: filepath.Join(dir, "csrd.yaml"), Database: o.Database, Env: o.Env}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	cfg := fmt.Sprintf(`listen: %s
base_path: /KeyfactorAPI
hsm:
  module: %s
  token_label: %s
  pin_file: %s
  max_sessions: 8
  session_wait_timeout: 10s
`, o.Listen, o.Tok.Module, o.Tok.Label, o.Tok.PINFile)
	for _, l := range o.HSM {
		cfg += "  " + l + "\n"
	}
	// Loopback only, so no authentication: the auth package has its own
	// tests, and these are about faults.
	cfg += fmt.Sprintf(`database: %s
log_level: info
shutdown_timeout: 10s
request_timeout: 1m
auth:
  mode: none
`, o.Database)
	for _, l := range o.Extra {
		cfg += l + "\n"
	}
	if err := os.WriteFile(in.Config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return in
}

// daemon is one running csrd process.
type daemon struct {
	cmd  *exec.Cmd
	Addr string // host:port it listens on
	Base string // http://host:port/KeyfactorAPI
	log  string // file with its stderr

	mu    sync.Mutex
	lines []string // stderr, one JSON (or race report) line each
	ready bool     // "csrd ready" logged: every token admitted

	exited  chan struct{}
	waitErr error
}

// startTimeout bounds start-up: module load, login, migrations and
// reconciliation of a few dozen interrupted records take well under a second.
const startTimeout = 30 * time.Second

// start runs csrd and waits until it logs "csrd ready". A daemon that exits
// first fails the test with its log.
func (in *instance) start(t testing.TB) *daemon {
	t.Helper()
	d, err := in.spawn()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.waitReady(startTimeout); err != nil {
		d.kill()
		t.Fatalf("csrd did not become ready: %v\n%s", err, d.tail(40))
	}
	return d
}

// spawn starts the process without waiting for readiness.
func (in *instance) spawn() (*daemon, error) {
	in.starts++
	d := &daemon{log: filepath.Join(in.Dir, fmt.Sprintf("csrd-%03d.log", in.starts)), exited: make(chan struct{})}
	d.cmd = exec.Command(csrdBin, "-config", in.Config)
	d.cmd.Env = append(os.Environ(), in.Env...)
	d.cmd.Dir = in.Dir
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(d.log)
	if err != nil {
		return nil, err
	}
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	ready := make(chan string, 1)
	go func() {
		defer logf.Close()
		sc := bufio.NewScanner(io.TeeReader(stderr, logf))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			d.mu.Lock()
			d.lines = append(d.lines, line)
			d.mu.Unlock()
			var m struct{ Message, Listen string }
			if json.Unmarshal([]byte(line), &m) == nil && (m.Message == "csrd ready" || m.Message == listeningMsg) {
				select {
				case ready <- m.Listen:
				default:
				}
				if m.Message == "csrd ready" {
					d.mu.Lock()
					d.ready = true
					d.mu.Unlock()
				}
			}
		}
		d.waitErr = d.cmd.Wait()
		close(d.exited)
	}()
	go func() {
		select {
		case addr := <-ready:
			d.mu.Lock()
			d.Addr, d.Base = addr, "http://"+addr+"/KeyfactorAPI"
			d.mu.Unlock()
		case <-d.exited:
		}
	}()
	return d, nil
}

// listeningMsg is csrd's start-up line when it serves while still waiting
// for a token; the tests that start csrd on a broken HSM wait for it.
const listeningMsg = "csrd listening; waiting for HSM tokens"

// waitReady waits for the "csrd ready" line (or the process's death):
// csrd serves with every token reconciled and admitted.
func (d *daemon) waitReady(timeout time.Duration) error {
	return d.waitLine(timeout, true)
}

// waitListening waits until csrd serves, ready or still waiting for a token.
func (d *daemon) waitListening(timeout time.Duration) error {
	return d.waitLine(timeout, false)
}

func (d *daemon) waitLine(timeout time.Duration, fully bool) error {
	deadline := time.Now().Add(timeout)
	for {
		d.mu.Lock()
		ok := d.Addr != "" && (d.ready || !fully)
		d.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("csrd exited before it was ready: %v", d.waitErr)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v", timeout)
		}
	}
}

// waitLog waits until the daemon has logged a line whose message is msg;
// false if it exits or timeout passes first.
func (d *daemon) waitLog(msg string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for d.logCount(msg) == 0 {
		select {
		case <-d.exited:
			return d.logCount(msg) > 0
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// kill sends SIGKILL and waits for the process to be gone: nothing in csrd
// runs after it, exactly like a power cut as far as the process goes.
func (d *daemon) kill() {
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
}

// stop sends SIGTERM and returns the exit error (nil on a clean exit).
func (d *daemon) stop(timeout time.Duration) error {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		return d.waitErr
	case <-time.After(timeout):
		d.kill()
		return errors.New("csrd did not stop after SIGTERM")
	}
}

// Pid is the process id, e.g. for /proc/PID/status.
func (d *daemon) Pid() int { return d.cmd.Process.Pid }

// logLines returns the daemon's stderr so far.
func (d *daemon) logLines() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.lines...)
}

// tail returns the last n log lines, for failure messages.
func (d *daemon) tail(n int) string {
	l := d.logLines()
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// checkNoRace fails the test if the race detector (or the Go runtime)
// reported anything: a race in the daemon under real traffic is a bug even
// when every answer looked right.
func (d *daemon) checkNoRace(t testing.TB) {
	t.Helper()
	for _, l := range d.logLines() {
		if strings.Contains(l, "WARNING: DATA RACE") || strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") {
			t.Errorf("csrd reported %q; log %s", l, d.log)
			return
		}
	}
}

// logField sums an integer field over the log lines whose msg is msg.
func (d *daemon) logField(msg, field string) int {
	n := 0
	for _, l := range d.logLines() {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil || m["message"] != msg {
			continue
		}
		if v, ok := m[field].(float64); ok {
			n += int(v)
		}
	}
	return n
}

// logEntries returns the log lines whose message is msg, decoded.
func (d *daemon) logEntries(msg string) []map[string]any {
	var out []map[string]any
	for _, l := range d.logLines() {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["message"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// logCount counts the log lines whose message is msg.
func (d *daemon) logCount(msg string) int {
	n := 0
	for _, l := range d.logLines() {
		var m struct{ Message string }
		if json.Unmarshal([]byte(l), &m) == nil && m.Message == msg {
			n++
		}
	}
	return n
}

// problems returns the daemon's warn and error lines, for failure messages.
func (d *daemon) problems() string {
	var out []string
	for _, l := range d.logLines() {
		if strings.Contains(l, `"level":"warn"`) || strings.Contains(l, `"level":"error"`) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
