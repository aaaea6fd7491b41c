package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/csrd/csrd/auth"
	"github.com/csrd/csrd/tools/loadgen"
)

// server is a csrd subprocess.
type server struct {
	bearer string // API token with the generate operation
	cmd    *exec.Cmd
	url    string // base URL including the base path
	log    string // its stderr
	done   chan error
}

// serverConfig is what the benchmark varies in csrd's configuration.
type serverConfig struct {
	binary   string
	module   string
	conf     string   // SOFTHSM2_CONF
	labels   []string // one token, or a pool
	pinFile  string
	database string
	// passwordFile is csrd's database_password_file (PostgreSQL).
	passwordFile string
	maxSessions  int
	// healthInterval, when set, replaces csrd's hsm.health_interval; see
	// sideBySideHealthInterval for why the side-by-side cells set it.
	healthInterval time.Duration
	dir            string // for the config and log files
	name           string // distinguishes the files of successive servers
	authFile       string // csrd's auth file
	bearer         string // its API token (generate), which every request sends
}

const basePath = "/KeyfactorAPI"

func (c serverConfig) yaml(listen string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %s\nbase_path: %s\ndatabase: %s\nlog_level: warn\n", listen, basePath, c.database)
	if c.passwordFile != "" {
		fmt.Fprintf(&b, "database_password_file: %s\n", c.passwordFile)
	}
	fmt.Fprintf(&b, "auth:\n  mode: file\n  file: %s\n", c.authFile)
	// A token that failed comes back within a second of its repair (the
	// default back-off cap is 30s), so the failover run can see it return.
	fmt.Fprintf(&b, "hsm:\n  module: %s\n  session_wait_timeout: 5m\n  reconnect_max_backoff: 1s\n", c.module)
	if c.maxSessions > 0 { // else csrd's default
		fmt.Fprintf(&b, "  max_sessions: %d\n", c.maxSessions)
	}
	if c.healthInterval > 0 {
		fmt.Fprintf(&b, "  health_interval: %s\n", c.healthInterval)
	}
	if len(c.labels) == 1 {
		fmt.Fprintf(&b, "  token_label: %s\n  pin_file: %s\n", c.labels[0], c.pinFile)
	} else {
		b.WriteString("  tokens:\n")
		for _, l := range c.labels {
			fmt.Fprintf(&b, "    - token_label: %s\n      pin_file: %s\n", l, c.pinFile)
		}
	}
	// A closed loop at C=64 queues far more requests than the token runs
	// at once; that is the point, so csrd's admission control (503 after
	// limits.generation_wait) must not turn the queue into errors.
	b.WriteString("limits:\n  generation_wait: 10m\nrequest_timeout: 10m\nshutdown_timeout: 10m\n")
	return b.String()
}

// startServer starts csrd and waits until it answers Status/Endpoints.
func startServer(ctx context.Context, c serverConfig) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	cfgPath := filepath.Join(c.dir, c.name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(c.yaml(listen)), 0o600); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	logPath := filepath.Join(c.dir, c.name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	cmd := exec.Command(c.binary, "-config", cfgPath)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+c.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("bench: start %s: %w", c.binary, err)
	}
	s := &server{bearer: c.bearer, cmd: cmd, url: "http://" + listen + basePath, log: logPath, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait(); logf.Close() }()
	ping := s.client(1)
	defer ping.CloseIdle()

	deadline := time.Now().Add(2 * time.Minute) // start-up opens a token of 10,000 keys
	for {
		if err := ping.Ping(ctx); err == nil {
			return s, nil
		}
		select {
		case err := <-s.done:
			s.done <- err
			return nil, fmt.Errorf("bench: csrd exited during start-up (%v): %s", err, tail(logPath))
		case <-ctx.Done():
			_ = s.stop() // the cancellation is what to report; stop only ends the child
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			// Why it would not stop may say why it was not ready.
			return nil, errors.Join(fmt.Errorf("bench: csrd not ready after 2m: %s", tail(logPath)), s.stop())
		}
	}
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// client is a client of s with conns keep-alive connections, sending the
// API token that may generate and read /metrics. A request may take
// minutes: RSA-2048 at C=64 queues for tens of seconds.
func (s *server) client(conns int) *loadgen.Client {
	return loadgen.NewClient(s.url, "Bearer "+s.bearer, conns, 15*time.Minute)
}

// stop sends SIGTERM (graceful shutdown) and waits.
func (s *server) stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("bench: csrd exited with %v: %s", err, tail(s.log))
		}
		return err
	case <-time.After(2 * time.Minute):
		_ = s.cmd.Process.Kill()
		return fmt.Errorf("bench: csrd did not stop within 2m")
	}
}

// stopAfter stops s as its caller returns and, unless the caller already
// returns an error, reports a failed stop in *err: a csrd that does not
// shut down cleanly is a finding of the run, as Run and runMemory treat it.
func (s *server) stopAfter(err *error) {
	if stopErr := s.stop(); *err == nil {
		*err = stopErr
	}
}

// writeAuthFile creates csrd's auth file with one API token that may
// generate (and scrape /metrics, for the memory run) and returns the token: each request is authenticated (and
// audited) as in production.
func writeAuthFile(path string) (string, error) {
	tok, id, sha, err := auth.NewToken()
	if err != nil {
		return "", err
	}
	af := &auth.File{}
	if err := af.AddToken(auth.Token{Name: "csrd-bench", ID: id, SHA256: sha,
		Grants: auth.Grants{Operations: []auth.Operation{auth.OpGenerate, auth.OpMetrics}}}); err != nil {
		return "", err
	}
	return tok, af.Save(path)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}
