package tlsconfig_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/tlsconfig"
)

// TestKeyFileCheckedAsRead: the key file is opened once and the open file
// is checked and read. A named pipe with mode 0600 passes a check by path,
// but what comes out of it is whatever another process writes then; it is
// refused, before anything is read, as not a regular file.
func TestKeyFileCheckedAsRead(t *testing.T) {
	dir := t.TempDir()
	root := fixture.NewCA(t, "root")
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	certFile := writePEM(t, dir, "tls.crt", "CERTIFICATE", 0o644, root.ServerCert(t, k.Public()).Raw)
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "tls.key")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		// Blocks until the pipe is opened for reading, then feeds it a key.
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			_, _ = w.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
			w.Close()
		}
	}()
	done := make(chan error, 1)
	go func() {
		_, err := tlsconfig.New(context.Background(), tlsconfig.Options{CertFile: certFile, KeyFile: fifo})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, tlsconfig.ErrConfig) || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("New with the key in a named pipe: %v; want refused as not a regular file", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("reading a named pipe as the key file did not return")
	}
}
