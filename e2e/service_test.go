package e2e

import (
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
)

// These tests run csrd as systemd would, with a NOTIFY_SOCKET the test
// listens on.

// service is a csrd process under test, run as systemd runs the unit.
type service struct {
	t      *testing.T
	cmd    *exec.Cmd
	notify *net.UnixConn
	msgs   chan string // datagrams from NOTIFY_SOCKET
	url    string      // scheme://host:port from STATUS=serving ...
	db     string
	exited chan struct{}
	stderr *fixture.Buffer
}

// opts adds to the daemon's config and environment.
type opts struct {
	tok   *fixture.Token // the token it runs on
	hsm   string         // more keys of the hsm: section, each "  key: value\n"
	extra string         // more top-level YAML
	env   []string       // more environment, e.g. WATCHDOG_USEC
}

// startDaemon writes a config, starts csrd with a notify socket and waits
// for READY=1.
func startDaemon(t *testing.T, o opts) *service {
	t.Helper()
	dir := t.TempDir()
	d := &service{t: t, msgs: make(chan string, 256), db: filepath.Join(dir, "csrd.db"),
		exited: make(chan struct{}), stderr: &fixture.Buffer{}}
	cfg := fmt.Sprintf(`hsm:
  module: %s
  token_label: %s
  pin_file: %s
  health_interval: 100ms
  reconnect_max_backoff: 500ms
%sdatabase: %s
log_level: debug
shutdown_timeout: 60s
%s`, o.tok.Module, o.tok.Label, o.tok.PINFile, o.hsm, d.db, o.extra)
	if !strings.Contains(o.extra, "listen:") {
		cfg += "listen: 127.0.0.1:0\n"
	}
	if !strings.Contains(o.extra, "auth:") {
		cfg += "auth:\n  mode: none\n" // loopback; auth has its own tests
	}
	cfgFile := filepath.Join(dir, "csrd.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	var b [8]byte
	_, _ = rand.Read(b[:])
	sock := "@csrd-daemon-test-" + hex.EncodeToString(b[:])
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	d.notify = conn
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(d.msgs)
				return
			}
			d.msgs <- string(buf[:n])
		}
	}()

	d.cmd = exec.Command(csrdBin, "-config", cfgFile)
	d.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "SOFTHSM2_CONF="+o.tok.Conf)
	d.cmd.Env = append(d.cmd.Env, o.env...)
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		<-d.exited
		conn.Close()
		if t.Failed() {
			t.Logf("csrd stderr:\n%s", d.stderr.String())
		}
	})

	ready := d.expect("READY=1", 60*time.Second)
	for _, line := range strings.Split(ready, "\n") {
		if addr, ok := strings.CutPrefix(line, "STATUS=serving "); ok {
			d.url = addr
		}
	}
	if d.url == "" {
		t.Fatalf("READY=1 without STATUS=serving: %q", ready)
	}
	return d
}

// expect waits for a datagram containing state and returns it.
func (d *service) expect(state string, within time.Duration) string {
	d.t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-d.msgs:
			if !ok {
				d.t.Fatalf("notify socket closed waiting for %s", state)
			}
			for _, line := range strings.Split(m, "\n") {
				if strings.HasPrefix(line, state) {
					return m
				}
			}
		case <-d.exited:
			d.t.Fatalf("csrd exited waiting for %s: %v", state, d.cmd.ProcessState)
		case <-timer.C:
			d.t.Fatalf("no %s within %v", state, within)
		}
	}
}

// logged reports whether csrd's stderr shows text within a few seconds:
// stderr is copied from a pipe, so a line can trail the notify datagram
// sent after it.
func (d *service) logged(text string) bool {
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.stderr.String(), text) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

type reply struct {
	status int
	header http.Header
	body   string
}

func (d *service) do(client *http.Client, method, path, body string) (reply, error) {
	req, err := http.NewRequest(method, d.url+path, strings.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Minute}
	}
	resp, err := client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}, err
}

func (d *service) mustDo(method, path, body string) reply {
	d.t.Helper()
	r, err := d.do(nil, method, path, body)
	if err != nil {
		d.t.Fatal(err)
	}
	return r
}

// metric reads the value of an unlabelled metric from csrd's /metrics.
func (d *service) metric(name string) float64 {
	d.t.Helper()
	r := d.mustDo(http.MethodGet, "/metrics", "")
	for _, line := range strings.Split(r.body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				d.t.Fatalf("/metrics: %s: %v", line, err)
			}
			return f
		}
	}
	d.t.Fatalf("/metrics has no %s", name)
	return 0
}

// waitMetric polls an unlabelled metric until ok holds (audit checkpoints
// are tried every 10 s).
func (d *service) waitMetric(name string, ok func(float64) bool, what string) {
	d.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for v := d.metric(name); !ok(v); v = d.metric(name) {
		if time.Now().After(deadline) {
			d.t.Fatalf("%s = %v after 30s; want %s", name, v, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitStatus polls path until it answers want (the daemon's health
// interval is 100ms; the bound only matters on a hopelessly slow machine).
func (d *service) waitStatus(path string, want int) {
	d.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := d.mustDo(http.MethodGet, path, "")
		if r.status == want {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s still %d %s, want %d", path, r.status, r.body, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const ecBody = `{"Subject":"CN=daemon.example.com","KeyType":"ECC","KeyLength":256,"SANs":{"dns":["daemon.example.com"]}}`

// TestTokenOutage: READY=1 and watchdog pings while healthy; the token
// directory moved away makes /readyz 503 and Generate 503 with Retry-After
// while the watchdog pings go on (csrd is waiting, not hung), and the
// refused Generate's audit row stays unsigned (the audit key is on that
// token); moving it back recovers all three without a restart;
// SIGTERM sends STOPPING=1 and exits 0.
func TestTokenOutage(t *testing.T) {
	fullRunOnly(t, "the systemd notify protocol (READY, WATCHDOG, STOPPING) through a token outage")
	tok := isolatedToken(t, "csrd-outage")
	d := startDaemon(t, opts{tok: tok, env: []string{"WATCHDOG_USEC=200000"}})
	if r := d.mustDo(http.MethodGet, "/readyz", ""); r.status != 200 {
		t.Fatalf("/readyz right after READY=1: %d %s", r.status, r.body)
	}
	d.expect("WATCHDOG=1", 10*time.Second)
	if r := d.mustDo(http.MethodPost, "/KeyfactorAPI/CSRGeneration/Generate", ecBody); r.status != 200 {
		t.Fatalf("Generate: %d %s", r.status, r.body)
	}
	if at := d.metric("csrd_audit_last_checkpoint_timestamp_seconds"); at <= 0 {
		t.Errorf("last checkpoint at %v: csrd signs one before it serves", at)
	}

	tokens := filepath.Join(tok.Dir, "tokens")
	ents, err := os.ReadDir(tokens)
	if err != nil || len(ents) != 1 {
		t.Fatalf("token dir: %d entries, %v", len(ents), err)
	}
	here, away := filepath.Join(tokens, ents[0].Name()), filepath.Join(t.TempDir(), "away")
	if err := os.Rename(here, away); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := os.Rename(away, here); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(restore)

	d.waitStatus("/readyz", http.StatusServiceUnavailable)
	r := d.mustDo(http.MethodGet, "/readyz", "")
	if !strings.Contains(r.body, `"hsm":"failing"`) || r.header.Get("Retry-After") == "" {
		t.Errorf("/readyz while away: %s Retry-After=%q", r.body, r.header.Get("Retry-After"))
	}
	start := time.Now()
	r = d.mustDo(http.MethodPost, "/KeyfactorAPI/CSRGeneration/Generate", ecBody)
	if r.status != 503 || !strings.Contains(r.body, "0xA0050001") || r.header.Get("Retry-After") == "" {
		t.Errorf("Generate while away: %d %s Retry-After=%q, want 503 0xA0050001", r.status, r.body, r.header.Get("Retry-After"))
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Generate while away took %v; it must fail fast", el)
	}
	if r := d.mustDo(http.MethodGet, "/healthz", ""); r.status != 200 {
		t.Errorf("/healthz while away: %d (the process is up)", r.status)
	}
	d.expect("STATUS=not ready", 10*time.Second)
	d.waitMetric("csrd_audit_unsigned_rows", func(v float64) bool { return v >= 1 }, "the refused Generate's row unsigned")
	// Waiting for the token is csrd doing its job, not a hang: the pings go
	// on (the checks answer, failing), so systemd does not restart it into
	// the same wait.
	d.expect("WATCHDOG=1", 10*time.Second)

	restore()
	d.waitStatus("/readyz", http.StatusOK)
	d.expect("WATCHDOG=1", 10*time.Second)
	if r := d.mustDo(http.MethodPost, "/KeyfactorAPI/CSRGeneration/Generate", ecBody); r.status != 200 {
		t.Fatalf("Generate after the token came back: %d %s", r.status, r.body)
	}
	if !d.logged("hsm: token reconnected") {
		t.Error("log does not say the token reconnected")
	}
	d.waitMetric("csrd_audit_unsigned_rows", func(v float64) bool { return v == 0 }, "every row signed again")

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	d.expect("STOPPING=1", 30*time.Second)
	<-d.exited
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}

// TestGracefulShutdown: SIGTERM while two RSA generations are in flight
// (one waiting for the only work session) stops accepting connections at
// once, finishes both with 200 and a CSR, and exits 0 with every record
// complete.
func TestGracefulShutdown(t *testing.T) {
	fullRunOnly(t, "SIGTERM finishing in-flight generations")
	// max_sessions 2 leaves crypto11 one work session: the second generation
	// queues inside the token layer, so both stay in flight for a while.
	d := startDaemon(t, opts{tok: isolatedToken(t, "csrd-shutdown"), hsm: "  max_sessions: 2\n", extra: "limits:\n  max_generations: 2\n  generation_wait: 1m\n"})
	const rsaBody = `{"Subject":"CN=shutdown.example.com","KeyType":"RSA","KeyLength":3072}`
	const inFlight = 2
	results := make(chan reply, inFlight)
	for range inFlight {
		go func() {
			r, err := d.do(nil, http.MethodPost, "/KeyfactorAPI/CSRGeneration/Generate", rsaBody)
			if err != nil {
				r.body = err.Error()
			}
			results <- r
		}()
	}
	// Both requests are in flight once both records say "generating".
	deadline := time.Now().Add(30 * time.Second)
	for sqlite3Count(t, d.db, "generating") < inFlight {
		if time.Now().After(deadline) {
			t.Fatal("the generations never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	d.expect("STOPPING=1", 10*time.Second)

	// No new connections while the in-flight work finishes.
	host := strings.TrimPrefix(d.url, "http://")
	for {
		c, err := net.DialTimeout("tcp", host, time.Second)
		if err != nil {
			break
		}
		c.Close()
		select {
		case <-d.exited:
			t.Fatal("csrd exited before it was seen refusing connections")
		default:
		}
		time.Sleep(5 * time.Millisecond)
	}
	if sqlite3Count(t, d.db, "pending") == inFlight {
		t.Log("both generations finished before the listener was seen closed")
	}

	for range inFlight {
		r := <-results
		if r.status != http.StatusOK || !strings.Contains(r.body, "BEGIN CERTIFICATE REQUEST") {
			t.Errorf("in-flight request after SIGTERM: %d %s", r.status, r.body)
		}
	}
	<-d.exited
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
	if g, p := sqlite3Count(t, d.db, "generating"), sqlite3Count(t, d.db, "pending"); g != 0 || p != inFlight {
		t.Errorf("after shutdown: %d generating, %d pending; want 0 and %d", g, p, inFlight)
	}
	if !d.logged(`"message":"stopped"`) {
		t.Error("no orderly stop in the log")
	}
}

// sqlite3Count counts the daemon's records in state, read with the sqlite3
// CLI (a separate reader; WAL allows it while csrd runs).
func sqlite3Count(t *testing.T, db, state string) int {
	t.Helper()
	out, err := exec.Command("sqlite3", "-readonly", db,
		fmt.Sprintf("PRAGMA busy_timeout=5000; SELECT COUNT(*) FROM keys WHERE state='%s';", state)).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("sqlite3: %v: %s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	// The PRAGMA prints its value first; the count is the last line.
	lines := strings.Fields(string(out))
	if len(lines) == 0 {
		t.Fatal("sqlite3 printed no count")
	}
	n, err := strconv.Atoi(lines[len(lines)-1])
	if err != nil {
		t.Fatalf("sqlite3 printed %q, not a count", out)
	}
	return n
}

// TestDaemonTLS: HTTPS with the server key inside the token (a PKCS#11
// URI) and mTLS; plain HTTP and clients without a certificate get nothing;
// SIGHUP reloads (RELOADING=1, then READY=1).
func TestDaemonTLS(t *testing.T) {
	fullRunOnly(t, "HTTPS with the server key in the token, mTLS and SIGHUP reload")
	dir := t.TempDir()
	ctx := context.Background()
	// In this test's SoftHSM config: the test makes the TLS key in the
	// token itself before csrd starts on it.
	tokFiles, tok := newToken(t, "csrd-tls")
	id, err := tok.NewKeyID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ref := hsm.KeyRef{ID: id, Label: "csrd-tls-test"}
	key, err := tok.GenerateKeyPair(ctx, hsm.KeySpec{Type: hsm.KeyECDSA, Curve: elliptic.P256()}, ref)
	if err != nil {
		t.Fatal(err)
	}
	keyURI, serverPub := hsm.KeyURI(tok.Label(), tok.Serial(), ref).String(), key.Public()

	serverCA, clientCA := fixture.NewCA(t, "csrd test server CA"), fixture.NewCA(t, "csrd test client CA")
	certFile := filepath.Join(dir, "tls.crt")
	fixture.WritePEM(t, certFile, serverCA.ServerCert(t, serverPub))
	caFile := filepath.Join(dir, "clients.pem")
	fixture.WritePEM(t, caFile, clientCA.Cert)

	d := startDaemon(t, opts{tok: tokFiles, extra: fmt.Sprintf("tls:\n  cert_file: %s\n  key_file: %q\n  client_ca_file: %s\n",
		certFile, keyURI, caFile)})
	if !strings.HasPrefix(d.url, "https://") {
		t.Fatalf("serving %s, want https", d.url)
	}
	roots := x509.NewCertPool()
	roots.AddCert(serverCA.Cert)
	clientCert := clientCA.TLSClient(t, "enroll-bot")
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
	}

	r, err := d.do(client(clientCert), http.MethodPost, "/KeyfactorAPI/CSRGeneration/Generate", ecBody)
	if err != nil || r.status != 200 || !strings.Contains(r.body, "BEGIN CERTIFICATE REQUEST") {
		t.Fatalf("Generate over mTLS: %v %d %s", err, r.status, r.body)
	}
	if _, err := d.do(client(), http.MethodGet, "/readyz", ""); err == nil {
		t.Error("a client without a certificate completed a request")
	}
	plain := *d
	plain.url = "http://" + strings.TrimPrefix(d.url, "https://")
	if r, err := plain.do(nil, http.MethodGet, "/readyz", ""); err == nil && r.status == 200 {
		t.Errorf("plain HTTP on the TLS port answered 200: %s", r.body)
	}

	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	d.expect("RELOADING=1", 10*time.Second)
	d.expect("READY=1", 10*time.Second)
	if !d.logged("TLS certificate reloaded") {
		t.Error("SIGHUP did not reload the certificate")
	}
	if r, err := d.do(client(clientCert), http.MethodGet, "/readyz", ""); err != nil || r.status != 200 {
		t.Errorf("/readyz after reload: %v %d", err, r.status)
	}
}
