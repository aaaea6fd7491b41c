package e2e

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
)

// serveTLS runs openssl s_server with the key taken from the token by its
// PKCS#11 URI and the certificate (and chain) in certFile, for one
// handshake. It returns the port, or "" with the server's output when it
// could not load the key.
func serveTLS(t testing.TB, in *instance, engine, keyURI, certFile string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "openssl.cnf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`openssl_conf = openssl_init
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
`, engine, in.Tok.Module, in.Tok.PIN)), 0o600); err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(fixture.FreePort(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	cmd := exec.CommandContext(ctx, "openssl", "s_server", "-engine", "pkcs11", "-keyform", "engine", "-key", keyURI,
		"-cert", certFile, "-cert_chain", certFile, "-accept", "127.0.0.1:"+port, "-naccept", "1")
	cmd.Env = append(os.Environ(), "OPENSSL_CONF="+conf, "SOFTHSM2_CONF="+in.Tok.Conf)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, _ := cmd.StdinPipe() // s_server ends at EOF on stdin
	var errOut fixture.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cancel(); _ = cmd.Wait() })
	accepted := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "ACCEPT") {
				accepted <- true
				_, _ = io.Copy(io.Discard, out)
				return
			}
		}
		accepted <- false
	}()
	select {
	case ok := <-accepted:
		if ok {
			return port, ""
		}
	case <-time.After(30 * time.Second):
	}
	return "", errOut.String()
}

// handshake connects with openssl s_client, verifying the chain to roots
// and the name, and returns the server certificate's serial (upper-case
// hex, as csrd shows it).
func handshake(t testing.TB, port, roots, name string) string {
	t.Helper()
	cmd := exec.Command("openssl", "s_client", "-connect", "127.0.0.1:"+port, "-CAfile", roots, "-verify_return_error",
		"-verify_hostname", name, "-servername", name, "-showcerts")
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verify return code: 0 (ok)") {
		t.Fatalf("s_client: %v\n%s", err, out)
	}
	blk, _ := pem.Decode(out[strings.Index(string(out), "-----BEGIN CERTIFICATE-----"):])
	if blk == nil {
		t.Fatalf("s_client showed no certificate:\n%s", out)
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%X", leaf.SerialNumber.Bytes())
}
