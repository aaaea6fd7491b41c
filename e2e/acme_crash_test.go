package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/store"
)

// TestACMEKillNine kills csrd with SIGKILL in the middle of an order and
// in the middle of a renewal, each time while its finalize request is held
// on the way to the CA (a Gate in front of Pebble), and lets that request
// reach the CA after csrd died, or not. After the restart csrd resumes the
// order it recorded: exactly one certificate is married per order, no key
// is without a record and no record without its key, and the same
// Enrollment/CSR call returns the certificate with the request id it was
// given before the kill.
func TestACMEKillNine(t *testing.T) {
	fullRunOnly(t, "enrollment with a CA (Pebble) end to end")
	p := fixture.StartPebble(t, fixture.PebbleOptions{AlwaysValid: true})
	g := fixture.StartGate(t, p)
	in := acmeInstance(t, "csrd-e2e-acme-kill", g.Directory, g.RootsFile, p.ChainRoots(t))
	setRequestTimeout(t, in, "2s") // a held order is answered PENDING in 2 s
	d := in.start(t)

	var enrolled []int64
	for _, reached := range []bool{true, false} {
		name := fmt.Sprintf("kill-%t.example.test", reached)
		id, csr := generateKey(t, d, name)
		held := g.Hold("finalize")
		status, a, b := enrollCSR(t, d, csr)
		if status != 200 || a.CertificateInformation.RequestDisposition != "PENDING" || a.CertificateInformation.KeyfactorRequestID < 1 {
			t.Fatalf("held enrollment: %d %s", status, b)
		}
		waitClosed(t, held, "the finalize request")
		d.kill()
		g.Release(reached)
		d = in.start(t)
		if !d.waitLog("resuming an open order", 10*time.Second) {
			t.Fatalf("the restarted csrd did not resume the order\n%s", d.tail(30))
		}
		waitState(t, d, id, "married", 30*time.Second)
		status, again, b := enrollCSR(t, d, csr)
		if status != 200 || again.CertificateInformation.RequestDisposition != "ISSUED" ||
			again.CertificateInformation.KeyfactorRequestID != a.CertificateInformation.KeyfactorRequestID {
			t.Fatalf("the same call after the restart: %d %s", status, b)
		}
		enrolled = append(enrolled, id)
	}

	// A renewal, killed with its new order's finalize held.
	old := enrolled[0]
	held := g.Hold("finalize")
	if status, b, _ := kf(t, d, "POST", fmt.Sprintf("/csrd/v1/keys/%d/renew", old), "", nil); status != 202 {
		t.Fatalf("renew: %d %s", status, b)
	}
	waitClosed(t, held, "the renewal's finalize request")
	d.kill()
	g.Release(true)
	d = in.start(t)
	deadline := time.Now().Add(30 * time.Second)
	for renewalState(t, in, old) != store.RenewalRenewed {
		if time.Now().After(deadline) {
			t.Fatalf("the renewal did not finish after the restart\n%s", d.problems())
		}
		time.Sleep(100 * time.Millisecond)
	}
	db := openDB(t, in)
	made, _ := db.RenewalKeys(context.Background(), old)
	db.Close()
	if len(made) != 1 || made[0].State != store.StateMarried {
		t.Fatalf("the renewal made %d keys: %+v", len(made), made)
	}
	if err := d.stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	checkEnrolledInvariants(t, in)
}

// TestACMEStartsWithCADown: csrd starts and serves with its CA unreachable;
// an enrollment is a Keyfactor-shaped 503 naming the CA's failure, and the
// key stays pending.
func TestACMEStartsWithCADown(t *testing.T) {
	fullRunOnly(t, "enrollment with a CA (Pebble) end to end")
	dead := fmt.Sprintf("https://127.0.0.1:%d/dir", fixture.FreePort(t))
	p := fixture.StartPebble(t, fixture.PebbleOptions{AlwaysValid: true})
	in := acmeInstance(t, "csrd-e2e-acme-down", dead, p.RootsFile, p.ChainRoots(t))
	d := in.start(t)
	defer func() { _ = d.stop(10 * time.Second) }()
	id, csr := generateKey(t, d, "down.example.test")
	status, _, b := enrollCSR(t, d, csr)
	if status != 503 || !contains(string(b), `"ErrorCode":"0xA0070002"`) || !contains(string(b), "connection refused") {
		t.Fatalf("enrollment with the CA down: %d %s", status, b)
	}
	if st := keyView(t, d, id).State; st != "pending" {
		t.Fatalf("key is %s", st)
	}
}

func waitClosed(t testing.TB, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s never came", what)
	}
}

func waitState(t testing.TB, d *daemon, id int64, state string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for keyView(t, d, id).State != state {
		if time.Now().After(deadline) {
			t.Fatalf("record %d not %s after %v\n%s", id, state, timeout, d.problems())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func renewalState(t testing.TB, in *instance, id int64) store.RenewalState {
	t.Helper()
	db := openDB(t, in)
	defer db.Close()
	r, err := db.GetRenewal(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r.State
}

func openDB(t testing.TB, in *instance) *store.Store {
	t.Helper()
	db, err := store.Open(context.Background(), in.Database)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// setRequestTimeout rewrites the instance's request_timeout.
func setRequestTimeout(t testing.TB, in *instance, d string) {
	t.Helper()
	b, err := os.ReadFile(in.Config)
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Replace(string(b), "request_timeout: 1m\n", "request_timeout: "+d+"\n", 1)
	if out == string(b) {
		t.Fatal("no request_timeout line in the instance's config")
	}
	if err := os.WriteFile(in.Config, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
