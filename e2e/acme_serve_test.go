package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
)

// TestACMEEnrollServeRenew runs the hardware-backed enrollment with a real
// CA end to end: Generate → Enrollment/CSR (Keyfactor's SDK call shape)
// → the certificate married → openssl s_server serves TLS with the key
// straight from the token by its PKCS#11 URI and the issued chain, which
// s_client verifies to Pebble's root → a forced renewal of the short-lived
// certificate → the deploy hook's key and certificate served the same way
// → the old key destroyed once its certificate has expired.
func TestACMEEnrollServeRenew(t *testing.T) {
	fullRunOnly(t, "enrollment with a CA (Pebble) end to end")
	engine := fixture.PKCS11Engine(t)
	p := fixture.StartPebble(t, fixture.PebbleOptions{AlwaysValid: true, Validity: 20 * time.Second})
	dir := t.TempDir()
	hook, hookOut := filepath.Join(dir, "reload-web"), filepath.Join(dir, "hook.log")
	if err := os.WriteFile(hook, []byte(fmt.Sprintf("#!/bin/sh\n{ echo ---; env | grep '^CSRD_' | sort; } >> %q\n", hookOut)), 0o755); err != nil {
		t.Fatal(err)
	}
	roots := filepath.Join(dir, "pebble-root.pem")
	if err := os.WriteFile(roots, p.ChainRoots(t), 0o600); err != nil {
		t.Fatal(err)
	}
	in := acmeInstance(t, "csrd-e2e-acme", p.Directory, p.RootsFile, p.ChainRoots(t),
		"    renew_before: 15s", "    retire_after_expiry: 0s", "    deploy_hook: "+hook)
	d := in.start(t)
	defer func() { _ = d.stop(10 * time.Second) }()

	id, csr := generateKey(t, d, "e2e.example.test")
	start := time.Now()
	status, a, b := enrollCSR(t, d, csr)
	ci := a.CertificateInformation
	if status != 200 || ci.RequestDisposition != "ISSUED" || int64(ci.KeyfactorID) != id || len(ci.Certificates) < 2 {
		t.Fatalf("Enrollment/CSR: %d %s\n%s", status, b, d.problems())
	}
	t.Logf("Enrollment/CSR answered ISSUED in %v", time.Since(start).Round(time.Millisecond))
	rec := keyView(t, d, id)
	if rec.State != "married" || rec.serial() != *ci.SerialNumber {
		t.Fatalf("record %d: %+v, answer serial %s", id, rec, *ci.SerialNumber)
	}
	chain := filepath.Join(dir, "issued.pem")
	if err := os.WriteFile(chain, []byte(strings.Join(ci.Certificates, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	port, why := serveTLS(t, in, engine, rec.KeyURI, chain)
	if port == "" {
		t.Fatalf("s_server with the key by URI did not start:\n%s", why)
	}
	if got := handshake(t, port, roots, "e2e.example.test"); got != rec.serial() {
		t.Fatalf("served certificate %s, issued %s", got, rec.serial())
	}

	// Forced renewal; the hook tells the web server the new key and file.
	if status, b, _ := kf(t, d, "POST", fmt.Sprintf("/csrd/v1/keys/%d/renew", id), "", nil); status != 202 {
		t.Fatalf("renew: %d %s", status, b)
	}
	env := waitHook(t, hookOut, id, 30*time.Second)
	next, _ := strconv.ParseInt(env["CSRD_RECORD_ID"], 10, 64)
	nrec := keyView(t, d, next)
	if nrec.State != "married" || nrec.RenewalOf != id || env["CSRD_KEY_URI"] != nrec.KeyURI || nrec.serial() == rec.serial() {
		t.Fatalf("renewed record %d: %+v; hook env %v", next, nrec, env)
	}
	port, why = serveTLS(t, in, engine, env["CSRD_KEY_URI"], env["CSRD_CERT_FILE"])
	if port == "" {
		t.Fatalf("s_server with the renewed key did not start:\n%s", why)
	}
	if got := handshake(t, port, roots, "e2e.example.test"); got != nrec.serial() {
		t.Fatalf("after the hook the server serves %s, want the renewed %s", got, nrec.serial())
	}

	// The old key goes once its certificate has expired.
	deadline := time.Now().Add(40 * time.Second)
	for keyView(t, d, id).State != "retired" {
		if time.Now().After(deadline) {
			t.Fatalf("old key %d not retired after its certificate expired\n%s", id, d.problems())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if port, _ := serveTLS(t, in, engine, rec.KeyURI, chain); port != "" {
		t.Error("s_server still loads the retired key from the token")
	}
	if err := d.stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	checkEnrolledInvariants(t, in)
}

// waitHook waits for the deploy hook's run for the renewal of record prev
// and returns its CSRD_ environment.
func waitHook(t testing.TB, file string, prev int64, d time.Duration) map[string]string {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(file)
		for _, block := range strings.Split(string(b), "---\n") {
			env := map[string]string{}
			for _, l := range strings.Split(block, "\n") {
				if k, v, ok := strings.Cut(l, "="); ok {
					env[k] = v
				}
			}
			if env["CSRD_PREVIOUS_RECORD_ID"] == strconv.FormatInt(prev, 10) {
				return env
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the deploy hook did not run for the renewal of record %d", prev)
	return nil
}
