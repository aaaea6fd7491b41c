package csr

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cloudflare/circl/sign/ed448"
)

// testKeys returns one software key per supported algorithm. RSA-2048 key
// generation is slow, so keys are made once per test binary.
var testKeys = sync.OnceValue(func() map[string]crypto.Signer {
	must := func(k crypto.Signer, err error) crypto.Signer {
		if err != nil {
			panic(err)
		}
		return k
	}
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	_, ed448Priv, err := ed448.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return map[string]crypto.Signer{
		"RSA-2048": must(rsa.GenerateKey(rand.Reader, 2048)),
		"P-256":    must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)),
		"P-384":    must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)),
		"P-521":    must(ecdsa.GenerateKey(elliptic.P521(), rand.Reader)),
		"Ed25519":  edPriv,
		"Ed448":    ed448Priv,
	}
})

var keyNames = []string{"RSA-2048", "P-256", "P-384", "P-521", "Ed25519", "Ed448"}

// openssl runs /usr/bin/openssl with a CSR file and returns its output.
func openssl(t *testing.T, der []byte, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	f := filepath.Join(t.TempDir(), "req.pem")
	if err := os.WriteFile(f, []byte(PEM(der)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, append([]string{"req", "-in", f}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl req %v: %v\n%s", args, err, out)
	}
	return string(out)
}
