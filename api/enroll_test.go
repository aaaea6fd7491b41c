package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
)

// TestEnrollmentEndToEnd runs the whole hardware-backed enrollment with
// real tools: Generate → a throw-away OpenSSL CA issues the certificate
// (openssl x509 -req) → Import → openssl s_server uses the private key
// straight from the token through the returned PKCS#11 URI (OpenSSL's
// pkcs11 engine, libp11) → openssl s_client -verify_return_error completes
// the handshake against the CA. s_server refuses a key that does not match
// the certificate, and the handshake is signed by the token, so this proves
// the key in the token is the certified one and is usable.
func TestEnrollmentEndToEnd(t *testing.T) {
	engine := fixture.PKCS11Engine(t)
	cases := []struct{ name, key string }{
		{"ECC P-256", `"KeyType":"ECC","KeyLength":256`},
		{"RSA 2048", `"KeyType":"RSA","KeyLength":2048`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// 1. Generate.
			resp := send(t, http.MethodPost, generatePath, "application/json",
				`{"Subject":"CN=localhost,O=csrd e2e",`+tc.key+`,"SANs":{"dns":["localhost"],"ip4":["127.0.0.1"]}}`, nil)
			var gen struct{ CSR string }
			decodeOK(t, resp, &gen)
			write(t, dir, "req.csr", gen.CSR)

			// 2. A throw-away CA issues the certificate.
			openssl(t, dir, nil, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
				"-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=csrd e2e throw-away CA", "-days", "1")
			write(t, dir, "leaf.ext", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n")
			openssl(t, dir, nil, "x509", "-req", "-in", "req.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
				"-out", "leaf.pem", "-days", "1", "-extfile", "leaf.ext")
			leaf := read(t, dir, "leaf.pem")

			// 3. Import: the certificate is married to the key.
			resp = send(t, http.MethodPost, "/KeyfactorAPI/Certificates/Import", "application/json", `{"Certificate":`+jsonString(leaf)+`}`, nil)
			var imp struct {
				ID         int64 `json:"Id"`
				KeyURI     string
				Thumbprint string
			}
			decodeOK(t, resp, &imp)
			if !strings.HasPrefix(imp.KeyURI, "pkcs11:token=") || !strings.Contains(imp.KeyURI, ";type=private") {
				t.Fatalf("KeyUri %q", imp.KeyURI)
			}

			// 4. s_server with the key from the token, by URI. The engine
			// and the PIN come from a generated openssl.cnf, not argv.
			conf := filepath.Join(dir, "openssl.cnf")
			write(t, dir, "openssl.cnf", fmt.Sprintf(`openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = %s
MODULE_PATH = %s
PIN = %s
init = 0
`, engine, testHSM.Module, testHSM.PIN))
			if err := os.Chmod(conf, 0o600); err != nil {
				t.Fatal(err)
			}
			env := append(os.Environ(), "OPENSSL_CONF="+conf, "SOFTHSM2_CONF="+testHSM.Conf)
			port := fmt.Sprint(fixture.FreePort(t))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			srv := exec.CommandContext(ctx, "openssl", "s_server", "-engine", "pkcs11", "-keyform", "engine",
				"-key", imp.KeyURI, "-cert", "leaf.pem", "-accept", "127.0.0.1:"+port, "-naccept", "1")
			srv.Dir, srv.Env = dir, env
			srvOut, err := srv.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			// s_server ends at EOF on stdin: hold it open until the test ends.
			srvIn, err := srv.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			defer srvIn.Close()
			var srvErr fixture.Buffer // written by exec's copying goroutine
			srv.Stderr = &srvErr
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
			if err := waitFor(srvOut, "ACCEPT", 30*time.Second); err != nil {
				t.Fatalf("s_server did not start: %v\n%s", err, srvErr.String())
			}
			go func() { _, _ = io.Copy(io.Discard, srvOut) }()

			// 5. s_client verifies the chain and the name and completes the handshake.
			cli := exec.CommandContext(ctx, "openssl", "s_client", "-connect", "127.0.0.1:"+port, "-CAfile", "ca.pem",
				"-verify_return_error", "-verify_hostname", "localhost", "-servername", "localhost", "-brief")
			cli.Dir, cli.Env = dir, os.Environ() // the client needs no engine
			cli.Stdin = strings.NewReader("")
			out, err := cli.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Verification: OK") || !strings.Contains(string(out), "CONNECTION ESTABLISHED") {
				t.Fatalf("s_client: %v\n%s\ns_server stderr:\n%s", err, out, srvErr.String())
			}
			t.Logf("handshake: %s", firstLines(string(out), 3))
			if strings.Contains(srvErr.String(), testHSM.PIN) {
				t.Error("the PIN appeared in s_server's output")
			}

			// Control: the URI is what selects the key. With another CKA_ID,
			// s_server cannot load a key and never listens.
			bogus := regexp.MustCompile(`id=[^;]*`).ReplaceAllString(imp.KeyURI, "id=%00%01")
			ctl := exec.CommandContext(ctx, "openssl", "s_server", "-engine", "pkcs11", "-keyform", "engine",
				"-key", bogus, "-cert", "leaf.pem", "-accept", "127.0.0.1:"+fmt.Sprint(fixture.FreePort(t)), "-naccept", "1")
			ctl.Dir, ctl.Env = dir, env
			if out, err := ctl.CombinedOutput(); err == nil || strings.Contains(string(out), "ACCEPT") {
				t.Errorf("s_server started with a URI naming no key:\n%s", out)
			}
		})
	}
}

func openssl(t *testing.T, dir string, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir, cmd.Env = dir, env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitFor reads r until a line contains want, or the deadline passes.
func waitFor(r io.Reader, want string, d time.Duration) error {
	found := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if strings.Contains(sc.Text(), want) {
				found <- nil
				return
			}
		}
		found <- fmt.Errorf("output ended without %q", want)
	}()
	select {
	case err := <-found:
		return err
	case <-time.After(d):
		return fmt.Errorf("no %q within %v", want, d)
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, " | ")
}

// decodeOK checks a 200 JSON answer and decodes it.
func decodeOK(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
}
