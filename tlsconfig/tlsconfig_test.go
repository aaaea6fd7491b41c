package tlsconfig_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/tlsconfig"
)

var testToken *hsm.Token

func TestMain(m *testing.M) {
	os.Exit(fixture.Main(m, "tlsconfig", []string{"csrd-tls-test"}, func(s *fixture.Suite) error {
		st := s.Token
		var err error
		testToken, err = hsm.Open(context.Background(), hsm.Config{Module: st.Module, TokenLabel: st.Label,
			PIN: st.PIN, MaxSessions: 4, PoolWaitTimeout: time.Minute}, zerolog.Nop())
		if err != nil {
			return err
		}
		s.Defer(func() { testToken.Close() })
		return nil
	}))
}

func writePEM(t *testing.T, dir, name, typ string, mode os.FileMode, ders ...[]byte) string {
	t.Helper()
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, out, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeKey(t *testing.T, dir, name string, k crypto.Signer, mode os.FileMode) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, name, "PRIVATE KEY", mode, der)
}

// serve runs an HTTPS server with cfg that answers with the client's CN.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cn := "-"
		if len(r.TLS.PeerCertificates) > 0 {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		fmt.Fprintf(w, "%s %x", cn, r.TLS.Version)
	}), ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String()
}

func get(url string, cfg *tls.Config) (string, error) {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 20 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// tokenKey generates a key pair in the token and returns its URI and public key.
func tokenKey(t *testing.T, spec hsm.KeySpec, label string) (string, crypto.PublicKey) {
	t.Helper()
	ctx := context.Background()
	id, err := testToken.NewKeyID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ref := hsm.KeyRef{ID: id, Label: label}
	k, err := testToken.GenerateKeyPair(ctx, spec, ref)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = testToken.DestroyKey(ctx, ref) })
	return hsm.KeyURI(testToken.Label(), testToken.Serial(), ref).String(), k.Public()
}

func findKey(ctx context.Context, uri string) (crypto.Signer, error) {
	return testToken.FindKeyByURI(ctx, uri)
}

func TestServe(t *testing.T) {
	dir := t.TempDir()
	root := fixture.NewCA(t, "csrd test root")
	fileKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ecURI, ecPub := tokenKey(t, hsm.KeySpec{Type: hsm.KeyECDSA, Curve: elliptic.P256()}, "tls-ec")
	rsaURI, rsaPub := tokenKey(t, hsm.KeySpec{Type: hsm.KeyRSA, Bits: 2048}, "tls-rsa")
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)

	tests := []struct {
		name    string
		pub     crypto.PublicKey
		keyFile string
	}{
		{"key file", fileKey.Public(), writeKey(t, dir, "tls.key", fileKey, 0o640)},
		// The TLS key lives in the token: every handshake signs there (ECDSA;
		// RSA-PSS for TLS 1.3 and PKCS#1 v1.5 for TLS 1.2).
		{"token ECDSA key", ecPub, ecURI},
		{"token RSA key", rsaPub, rsaURI},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf := root.ServerCert(t, tt.pub)
			certFile := writePEM(t, t.TempDir(), "tls.crt", "CERTIFICATE", 0o644, leaf.Raw, root.Cert.Raw)
			s, err := tlsconfig.New(context.Background(), tlsconfig.Options{CertFile: certFile, KeyFile: tt.keyFile, FindKey: findKey})
			if err != nil {
				t.Fatal(err)
			}
			if s.MutualTLS() || s.Leaf().SerialNumber.Cmp(leaf.SerialNumber) != 0 {
				t.Errorf("MutualTLS=%v leaf serial %v", s.MutualTLS(), s.Leaf().SerialNumber)
			}
			url := serve(t, s.Config())
			for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
				got, err := get(url, &tls.Config{RootCAs: pool, MinVersion: v, MaxVersion: v})
				if err != nil {
					t.Fatalf("TLS %x: %v", v, err)
				}
				if want := fmt.Sprintf("- %x", v); got != want {
					t.Errorf("TLS %x: got %q, want %q", v, got, want)
				}
			}
			if _, err := get(url, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
				t.Error("TLS 1.1 handshake succeeded")
			}
		})
	}
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	root, clients, stranger := fixture.NewCA(t, "server root"), fixture.NewCA(t, "client CA"), fixture.NewCA(t, "stranger CA")
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	certFile := writePEM(t, dir, "tls.crt", "CERTIFICATE", 0o644, root.ServerCert(t, srvKey.Public()).Raw)
	caFile := writePEM(t, dir, "clients.pem", "CERTIFICATE", 0o644, clients.Cert.Raw)
	s, err := tlsconfig.New(context.Background(), tlsconfig.Options{CertFile: certFile,
		KeyFile: writeKey(t, dir, "tls.key", srvKey, 0o600), ClientCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	if !s.MutualTLS() {
		t.Fatal("MutualTLS false with a client CA")
	}
	url := serve(t, s.Config())
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	clientCert := func(issuer *fixture.CA, cn string) []tls.Certificate {
		return []tls.Certificate{issuer.TLSClient(t, cn)}
	}
	tests := []struct {
		name   string
		certs  []tls.Certificate
		wantCN string // "" = the handshake must fail
	}{
		{"no client certificate", nil, ""},
		{"certificate from another CA", clientCert(stranger, "mallory"), ""},
		{"certificate from the client CA", clientCert(clients, "enroll-bot"), "enroll-bot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: pool}
			if tt.certs != nil {
				// Send the certificate whatever CAs the server asks for, so a
				// stranger's certificate reaches the server's verification.
				cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tt.certs[0], nil }
			}
			got, err := get(url, cfg)
			if tt.wantCN == "" {
				if err == nil {
					t.Fatalf("request succeeded: %q", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := tt.wantCN + " 304"; got != want {
				t.Errorf("server saw %q, want %q", got, want)
			}
		})
	}
}

func TestBadMaterialAndReload(t *testing.T) {
	dir := t.TempDir()
	root := fixture.NewCA(t, "root")
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert1 := writePEM(t, dir, "1.crt", "CERTIFICATE", 0o644, root.ServerCert(t, k1.Public()).Raw)
	key1 := writeKey(t, dir, "1.key", k1, 0o600)
	key2 := writeKey(t, dir, "2.key", k2, 0o600)
	tests := []struct {
		name string
		o    tlsconfig.Options
	}{
		{"key does not match certificate", tlsconfig.Options{CertFile: cert1, KeyFile: key2}},
		{"world-readable key", tlsconfig.Options{CertFile: cert1, KeyFile: writeKey(t, dir, "w.key", k1, 0o644)}},
		{"no certificate in file", tlsconfig.Options{CertFile: key1, KeyFile: key1}},
		{"no key in file", tlsconfig.Options{CertFile: cert1, KeyFile: writePEM(t, dir, "c.key", "CERTIFICATE", 0o600, []byte{1})}},
		{"URI without a token", tlsconfig.Options{CertFile: cert1, KeyFile: "pkcs11:object=tls"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tlsconfig.New(context.Background(), tt.o); !errors.Is(err, tlsconfig.ErrConfig) {
				t.Fatalf("New: %v, want ErrConfig", err)
			}
		})
	}
	t.Run("token key not found", func(t *testing.T) {
		_, err := tlsconfig.New(context.Background(), tlsconfig.Options{CertFile: cert1, KeyFile: "pkcs11:object=no-such-key", FindKey: findKey})
		if !errors.Is(err, hsm.ErrNotFound) {
			t.Fatalf("New: %v, want hsm.ErrNotFound", err)
		}
	})

	t.Run("reload", func(t *testing.T) {
		certFile, keyFile := filepath.Join(dir, "live.crt"), filepath.Join(dir, "live.key")
		copyFile(t, cert1, certFile)
		copyFile(t, key1, keyFile)
		s, err := tlsconfig.New(context.Background(), tlsconfig.Options{CertFile: certFile, KeyFile: keyFile})
		if err != nil {
			t.Fatal(err)
		}
		first := s.Leaf().SerialNumber
		// A half-renewed pair (new key, old certificate) is refused and the
		// old material keeps serving.
		copyFile(t, key2, keyFile)
		if err := s.Reload(context.Background()); !errors.Is(err, tlsconfig.ErrConfig) {
			t.Fatalf("Reload with mismatched files: %v", err)
		}
		if s.Leaf().SerialNumber.Cmp(first) != 0 {
			t.Fatal("failed reload replaced the certificate")
		}
		renewed := root.ServerCert(t, k2.Public())
		writePEM(t, dir, "live.crt", "CERTIFICATE", 0o644, renewed.Raw)
		if err := s.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(root.Cert)
		var seen *x509.Certificate
		url := serve(t, s.Config())
		_, err = get(url, &tls.Config{RootCAs: pool, VerifyConnection: func(cs tls.ConnectionState) error {
			seen = cs.PeerCertificates[0]
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		if seen.SerialNumber.Cmp(renewed.SerialNumber) != 0 {
			t.Error("handshake did not use the reloaded certificate")
		}
	})
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
