package acmetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// PebbleOptions configure one Pebble instance.
type PebbleOptions struct {
	// EAB maps key ids to base64url MAC keys; when set, Pebble requires
	// External Account Binding for every new account.
	EAB map[string]string
	// AlwaysValid makes Pebble accept every challenge without validating
	// it (PEBBLE_VA_ALWAYS_VALID): challenge "none" on the client's side.
	AlwaysValid bool
	// HTTPPort is the port Pebble connects to for http-01.
	HTTPPort int
	// DNSServer is the resolver Pebble asks (host:port), e.g. a Bind's.
	DNSServer string
	// Validity is the lifetime of the certificates of the default profile
	// (0: Pebble's 90 days).
	Validity time.Duration
}

// Pebble is a running Pebble.
type Pebble struct {
	// Directory is the ACME directory URL.
	Directory string
	// RootsFile holds (PEM) the CA of Pebble's HTTPS certificate: what the
	// client's acme.roots_file names.
	RootsFile string
	// MgmtURL is Pebble's management interface (roots, cert status).
	MgmtURL string
	dir     string
	client  *http.Client
	log     *syncBuffer
}

// StartPebble starts a Pebble with opts in a directory of t's and stops it
// when t ends.
func StartPebble(t testing.TB, opts PebbleOptions) *Pebble {
	t.Helper()
	bin := PebbleBinary(t)
	dir := t.TempDir()
	tlsCA, err := writeServerCert(dir, "pebble")
	if err != nil {
		t.Fatal(err)
	}
	acmePort, mgmtPort := FreePort(t), FreePort(t)
	conf := filepath.Join(dir, "pebble.json")
	if err := writePebbleConfig(conf, dir, acmePort, mgmtPort, opts); err != nil {
		t.Fatal(err)
	}
	args := []string{"-config", conf}
	if opts.DNSServer != "" {
		args = append(args, "-dnsserver", opts.DNSServer)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1")
	if opts.AlwaysValid {
		cmd.Env = append(cmd.Env, "PEBBLE_VA_ALWAYS_VALID=1")
	}
	p := &Pebble{
		Directory: fmt.Sprintf("https://127.0.0.1:%d/dir", acmePort),
		MgmtURL:   fmt.Sprintf("https://127.0.0.1:%d", mgmtPort),
		RootsFile: tlsCA, dir: dir, log: &syncBuffer{},
	}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if p.client, err = rootsClient(tlsCA); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("acmetest: start pebble: %v", err)
	}
	t.Cleanup(func() { stop(cmd) })
	if err := waitHTTP(p.client, p.Directory, 30*time.Second); err != nil {
		t.Fatalf("acmetest: pebble did not serve its directory: %v\n%s", err, p.log.String())
	}
	return p
}

// Log returns what Pebble has printed so far.
func (p *Pebble) Log() string { return p.log.String() }

// ChainRoots returns (PEM) the root of the certificates Pebble issues,
// fetched from the management interface: what chain_roots_file names.
func (p *Pebble) ChainRoots(t testing.TB) []byte {
	t.Helper()
	res, err := p.client.Get(p.MgmtURL + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("acmetest: pebble roots: %d %v", res.StatusCode, err)
	}
	return b
}

// Revoked reports whether Pebble has revoked the certificate with serial
// (hex).
func (p *Pebble) Revoked(t testing.TB, serial string) bool {
	t.Helper()
	res, err := p.client.Get(p.MgmtURL + "/cert-status-by-serial/" + strings.ToLower(strings.TrimLeft(serial, "0")))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var st struct{ Status string }
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		t.Fatalf("acmetest: cert status of %s: %v", serial, err)
	}
	return st.Status == "Revoked"
}

func writePebbleConfig(path, dir string, acmePort, mgmtPort int, o PebbleOptions) error {
	profile := map[string]any{"description": "csrd tests"}
	if o.Validity > 0 {
		profile["validityPeriod"] = int64(o.Validity / time.Second)
	}
	httpPort := o.HTTPPort
	if httpPort == 0 {
		httpPort = 5002 // never reached: no http-01 is answered
	}
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  fmt.Sprintf("127.0.0.1:%d", acmePort),
		"managementListenAddress":        fmt.Sprintf("127.0.0.1:%d", mgmtPort),
		"certificate":                    filepath.Join(dir, "pebble.crt"),
		"privateKey":                     filepath.Join(dir, "pebble.key"),
		"httpPort":                       httpPort,
		"tlsPort":                        FreePortNumber(),
		"externalAccountBindingRequired": len(o.EAB) > 0,
		"externalAccountMACKeys":         o.EAB,
		"keyAlgorithm":                   "ecdsa",
		"retryAfter":                     map[string]int{"authz": 0, "order": 0},
		"profiles":                       map[string]any{"default": profile},
	}}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

var pebbleBin struct {
	once sync.Once
	path string
	err  error
}

// PebbleBinary returns the Pebble executable: $CSRD_PEBBLE when set, else
// the one `go tool -modfile=tools/pebble.mod` builds (cached by the Go build
// cache after the first time; `make deps` builds it ahead).
func PebbleBinary(t testing.TB) string {
	t.Helper()
	pebbleBin.once.Do(func() {
		if p := os.Getenv("CSRD_PEBBLE"); p != "" {
			pebbleBin.path = p
			return
		}
		root, err := moduleRoot()
		if err != nil {
			pebbleBin.err = err
			return
		}
		cmd := exec.Command("go", "tool", "-modfile=tools/pebble.mod", "-n", "pebble")
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			pebbleBin.err = fmt.Errorf("acmetest: building pebble (go tool -modfile=tools/pebble.mod): %v\n%s", err, stderr.String())
			return
		}
		pebbleBin.path = strings.TrimSpace(string(out))
	})
	if pebbleBin.err != nil {
		t.Fatal(pebbleBin.err)
	}
	return pebbleBin.path
}

// moduleRoot is the repository root: this file's directory's parent.
func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("acmetest: cannot locate the module root")
	}
	root := filepath.Dir(filepath.Dir(file))
	if _, err := os.Stat(filepath.Join(root, "tools", "pebble.mod")); err != nil {
		return "", fmt.Errorf("acmetest: %w", err)
	}
	return root, nil
}

func rootsClient(caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("acmetest: no certificate in %s", caFile)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}, nil
}

func waitHTTP(c *http.Client, url string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		res, err := c.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", res.StatusCode)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return last
}

// stop ends a server process and waits for it.
func stop(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// FreePortNumber returns a loopback TCP port that was free a moment ago.
func FreePortNumber() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer ln.Close()
	_, p, _ := strings.Cut(ln.Addr().String(), ":")
	n, _ := strconv.Atoi(p)
	return n
}

// FreePort is FreePortNumber for a test.
func FreePort(t testing.TB) int {
	t.Helper()
	p := FreePortNumber()
	if p == 0 {
		t.Fatal("acmetest: no free loopback port")
	}
	return p
}

// syncBuffer collects a process's output for the test's failure message.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
