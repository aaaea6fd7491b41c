package acmeca_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/csrd/csrd/acmeca"
	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/fixture"
)

// memAccount is an account whose key is in memory: the token-held key is
// package enroll's business, tested there.
type memAccount struct {
	key  crypto.Signer
	mu   sync.Mutex
	url  string
	sets int
}

func newAccount(t *testing.T) *memAccount {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &memAccount{key: k}
}

func (a *memAccount) Key(context.Context) (crypto.Signer, string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.key, a.url, nil
}

func (a *memAccount) SaveURL(_ context.Context, url string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.url, a.sets = url, a.sets+1
	return nil
}

func roots(t *testing.T, pemFile string, pemBytes []byte) *x509.CertPool {
	t.Helper()
	if pemFile != "" {
		b, err := os.ReadFile(pemFile)
		if err != nil {
			t.Fatal(err)
		}
		pemBytes = b
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemBytes) {
		t.Fatal("no roots")
	}
	return p
}

// newCSR makes a CSR for names (DNS names or IP addresses) with a fresh key.
func newCSR(t *testing.T, names ...string) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: names[0]}}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func enroll(ctx context.Context, t *testing.T, ca *acmeca.CA, csrDER []byte, replaces string) ([]*x509.Certificate, error) {
	t.Helper()
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := acmeca.Identifiers(csr)
	if err != nil {
		t.Fatal(err)
	}
	url, err := ca.Order(ctx, ids, replaces)
	if err != nil {
		return nil, err
	}
	return ca.Complete(ctx, url, csrDER)
}

func requireServers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Pebble (and bind9)")
	}
}

// TestNoneChallengeARIRevoke: with Pebble's always-valid mode, challenge
// none orders, finalizes and gets a chain that verifies to Pebble's root;
// ARI answers a window inside the certificate's life; a renewal order with
// "replaces" is accepted, a second one for the same certificate too (asked
// again without the field); revocation works and is idempotent.
func TestNoneChallengeARIRevoke(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	p := fixture.StartPebble(t, fixture.PebbleOptions{AlwaysValid: true, Validity: time.Hour})
	acct := newAccount(t)
	ca := acmeca.New(acmeca.Config{Name: "pebble", Directory: p.Directory, Roots: roots(t, p.RootsFile, nil),
		ChainRoots: roots(t, "", p.ChainRoots(t)), Contact: []string{"mailto:pki@example.test"}}, acct)
	chain, err := enroll(ctx, t, ca, newCSR(t, "www.example.test", "127.0.0.1"), "")
	if err != nil {
		t.Fatalf("enroll: %v\n%s", err, p.Log())
	}
	leaf := chain[0]
	if len(chain) < 2 || leaf.DNSNames[0] != "www.example.test" || len(leaf.IPAddresses) != 1 || leaf.NotAfter.Sub(leaf.NotBefore) > time.Hour {
		t.Fatalf("chain of %d, leaf %v %v valid %s to %s", len(chain), leaf.DNSNames, leaf.IPAddresses, leaf.NotBefore, leaf.NotAfter)
	}
	if acct.sets != 1 || !strings.HasPrefix(acct.url, "https://127.0.0.1") {
		t.Errorf("account URL saved %d times: %q", acct.sets, acct.url)
	}
	ri, err := ca.RenewalInfo(ctx, leaf)
	if err != nil || ri.Start.Before(leaf.NotBefore.Add(-time.Second)) || ri.End.After(leaf.NotAfter.Add(time.Second)) {
		t.Fatalf("RenewalInfo = %+v, %v (certificate %s to %s)", ri, err, leaf.NotBefore, leaf.NotAfter)
	}
	id, err := acmeca.CertID(leaf)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := enroll(ctx, t, ca, newCSR(t, "www.example.test"), id); err != nil {
			t.Fatalf("renewal %d with replaces: %v\n%s", i+1, err, p.Log())
		}
	}
	if !strings.Contains(p.Log(), "is a replacement of") {
		t.Errorf("Pebble did not see a replacement order:\n%s", p.Log())
	}
	for range 2 {
		if err := ca.Revoke(ctx, leaf.Raw, acme.CRLReasonSuperseded); err != nil {
			t.Fatalf("revoke: %v", err)
		}
	}
	if !p.Revoked(t, fmt.Sprintf("%x", leaf.SerialNumber)) {
		t.Error("Pebble does not list the certificate as revoked")
	}
}

// TestReplacesOnlyWithARI: to a CA whose directory offers no renewalInfo,
// a renewal order goes without "replaces", and RenewalInfo says ErrNoARI.
func TestReplacesOnlyWithARI(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	p := fixture.StartPebble(t, fixture.PebbleOptions{AlwaysValid: true})
	g := fixture.StartGate(t, p)
	g.HideARI()
	ca := acmeca.New(acmeca.Config{Name: "no-ari", Directory: g.Directory, Roots: roots(t, g.RootsFile, nil),
		ChainRoots: roots(t, "", p.ChainRoots(t))}, newAccount(t))
	chain, err := enroll(ctx, t, ca, newCSR(t, "old.example.test"), "")
	if err != nil {
		t.Fatalf("enroll: %v\n%s", err, p.Log())
	}
	if _, err := ca.RenewalInfo(ctx, chain[0]); !errors.Is(err, acmeca.ErrNoARI) {
		t.Errorf("RenewalInfo without ARI: %v, want ErrNoARI", err)
	}
	id, err := acmeca.CertID(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enroll(ctx, t, ca, newCSR(t, "old.example.test"), id); err != nil {
		t.Fatalf("renewal: %v\n%s", err, p.Log())
	}
	if strings.Contains(p.Log(), "is a replacement of") {
		t.Errorf("a CA without ARI was sent replaces:\n%s", p.Log())
	}
}

// TestEAB: a CA that requires External Account Binding refuses an account
// without it or with a wrong MAC key, saying why, and takes the right one.
func TestEAB(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	mac := make([]byte, 32)
	_, _ = rand.Read(mac)
	p := fixture.StartPebble(t, fixture.PebbleOptions{AlwaysValid: true,
		EAB: map[string]string{"kid-1": base64.RawURLEncoding.EncodeToString(mac)}})
	wrong := make([]byte, 32)
	for _, tc := range []struct {
		name string
		eab  *acme.ExternalAccountBinding
		want string
	}{
		{"none", nil, "externalAccountRequired"},
		{"wrong key", &acme.ExternalAccountBinding{KID: "kid-1", Key: wrong}, "unauthorized"},
		{"unknown kid", &acme.ExternalAccountBinding{KID: "kid-9", Key: mac}, "unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := acmeca.New(acmeca.Config{Name: "eab", Directory: p.Directory, Roots: roots(t, p.RootsFile, nil), EAB: tc.eab}, newAccount(t))
			_, err := enroll(ctx, t, ca, newCSR(t, "www.example.test"), "")
			var ce *acmeca.Error
			if !errors.As(err, &ce) || !errors.Is(err, acmeca.ErrRefused) || !strings.Contains(ce.Problem()+ce.Detail, tc.want) {
				t.Fatalf("err = %v, want a refusal mentioning %q", err, tc.want)
			}
		})
	}
	ca := acmeca.New(acmeca.Config{Name: "eab", Directory: p.Directory, Roots: roots(t, p.RootsFile, nil),
		EAB: &acme.ExternalAccountBinding{KID: "kid-1", Key: mac}}, newAccount(t))
	if _, err := enroll(ctx, t, ca, newCSR(t, "www.example.test"), ""); err != nil {
		t.Fatalf("with the right EAB: %v", err)
	}
}

// TestCADown: a directory nobody answers is ErrUnavailable, fast.
func TestCADown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ca := acmeca.New(acmeca.Config{Name: "down", Directory: fmt.Sprintf("https://127.0.0.1:%d/dir", fixture.FreePort(t))}, newAccount(t))
	_, err := ca.Order(ctx, []acme.AuthzID{{Type: "dns", Value: "www.example.test"}}, "")
	if !errors.Is(err, acmeca.ErrUnavailable) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v, want ErrUnavailable saying connection refused", err)
	}
}

// TestHTTP01 lets Pebble validate http-01 for real against the responder,
// for a name bind9 resolves to 127.0.0.1 and for an IP address; a name
// whose answer is not served fails with Pebble's problem detail.
func TestHTTP01(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	b := fixture.StartBind(t, "example.test", map[string]string{"www": "127.0.0.1", "elsewhere": "127.0.0.2"})
	port := fixture.FreePort(t)
	p := fixture.StartPebble(t, fixture.PebbleOptions{HTTPPort: port, DNSServer: b.Addr})
	h := acmeca.NewHTTP01()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	srv := h.Server()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	ca := acmeca.New(acmeca.Config{Name: "pebble", Directory: p.Directory, Roots: roots(t, p.RootsFile, nil), Solver: h}, newAccount(t))
	if _, err := enroll(ctx, t, ca, newCSR(t, "www.example.test", "127.0.0.1"), ""); err != nil {
		t.Fatalf("http-01: %v\n%s", err, p.Log())
	}
	_, err = enroll(ctx, t, ca, newCSR(t, "elsewhere.example.test"), "")
	if !errors.Is(err, acmeca.ErrRefused) || !strings.Contains(err.Error(), "elsewhere.example.test") {
		t.Fatalf("unreachable answer: %v, want a refusal naming the identifier", err)
	}
	// The responder serves nothing but challenges in progress.
	res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("GET / on the responder: %d", res.StatusCode)
	}
}

// TestDNS01 publishes the answer in bind9 with TSIG-signed RFC 2136
// updates, over UDP and over TCP, and lets Pebble (asking over TCP)
// validate it; the record is gone afterwards. A wrong TSIG secret is
// refused by the server and reported.
func TestDNS01(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	b := fixture.StartBind(t, "example.test", nil)
	p := fixture.StartPebble(t, fixture.PebbleOptions{DNSServer: b.Addr})
	secret, err := config.ReadTSIGSecret(b.TSIGSecretFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			d := &acmeca.DNS01{Server: b.Addr, Zone: b.Zone, KeyName: b.TSIGName, Algorithm: b.TSIGAlgorithm, Secret: secret, Net: network}
			ca := acmeca.New(acmeca.Config{Name: "pebble", Directory: p.Directory, Roots: roots(t, p.RootsFile, nil), Solver: d}, newAccount(t))
			name := network + ".example.test"
			if _, err := enroll(ctx, t, ca, newCSR(t, name, "*."+name), ""); err != nil {
				t.Fatalf("dns-01: %v\n%s\n%s", err, p.Log(), b.Log())
			}
			if txt, err := b.TXT("_acme-challenge." + name); err != nil || len(txt) != 0 {
				t.Errorf("challenge records left behind: %v %v", txt, err)
			}
		})
	}
	bad := &acmeca.DNS01{Server: b.Addr, Zone: b.Zone, KeyName: b.TSIGName, Secret: base64.StdEncoding.EncodeToString([]byte("wrong secret, 32 bytes long....."))}
	ca := acmeca.New(acmeca.Config{Name: "pebble", Directory: p.Directory, Roots: roots(t, p.RootsFile, nil), Solver: bad}, newAccount(t))
	if _, err := enroll(ctx, t, ca, newCSR(t, "bad.example.test"), ""); err == nil || !strings.Contains(err.Error(), "RFC 2136 update") {
		t.Fatalf("wrong TSIG secret: %v", err)
	}
}
