package tlsconfig

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
)

// Options say where the certificate, key and client CAs come from.
type Options struct {
	CertFile     string // PEM chain, leaf first
	KeyFile      string // PEM private key, or a PKCS#11 URI ("pkcs11:...")
	ClientCAFile string // PEM CA certificates; "" = no client certificates

	// FindKey resolves a PKCS#11 URI to a signer on the token; required when
	// KeyFile is a URI.
	FindKey func(ctx context.Context, uri string) (crypto.Signer, error)
}

// Server holds the current TLS material and hands it to every handshake.
type Server struct {
	o   Options
	cur atomic.Pointer[material]
}

type material struct {
	cert      *tls.Certificate
	clientCAs *x509.CertPool // nil: no mTLS
}

// ErrConfig marks a certificate, key or CA file that cannot be used.
var ErrConfig = errors.New("tlsconfig: unusable TLS configuration")

// New loads the material once; errors name the file and the problem.
func New(ctx context.Context, o Options) (*Server, error) {
	s := &Server{o: o}
	if err := s.Reload(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files (and finds the token key) again. On error the
// previous material stays in use.
func (s *Server) Reload(ctx context.Context) error {
	m, err := load(ctx, s.o)
	if err != nil {
		return err
	}
	s.cur.Store(m)
	return nil
}

// Leaf returns the current server certificate, e.g. to log its expiry.
func (s *Server) Leaf() *x509.Certificate { return s.cur.Load().cert.Leaf }

// MutualTLS reports whether client certificates are required.
func (s *Server) MutualTLS() bool { return s.cur.Load().clientCAs != nil }

// Config returns the tls.Config for http.Server.TLSConfig. Each handshake
// reads the current material, so Reload takes effect for new connections.
func (s *Server) Config() *tls.Config {
	base := func() *tls.Config {
		return &tls.Config{
			// TLS 1.2 is the floor: Keyfactor's SDK and .NET clients on
			// older Windows servers still negotiate 1.2; Go's 1.2 suites are
			// ECDHE with AEAD only.
			MinVersion: tls.VersionTLS12,
			NextProtos: []string{"h2", "http/1.1"},
		}
	}
	cfg := base()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		m := s.cur.Load()
		c := base()
		c.Certificates = []tls.Certificate{*m.cert}
		if m.clientCAs != nil {
			c.ClientAuth = tls.RequireAndVerifyClientCert
			c.ClientCAs = m.clientCAs
		}
		return c, nil
	}
	return cfg
}

func load(ctx context.Context, o Options) (*material, error) {
	chain, err := readCerts(o.CertFile)
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	var key crypto.Signer
	if isURI(o.KeyFile) {
		if o.FindKey == nil {
			return nil, fmt.Errorf("%w: key_file is a PKCS#11 URI but no token is open", ErrConfig)
		}
		if key, err = o.FindKey(ctx, o.KeyFile); err != nil {
			return nil, fmt.Errorf("tlsconfig: key %s: %w", o.KeyFile, err)
		}
	} else if key, err = readKey(o.KeyFile); err != nil {
		return nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("%w: the key in %s does not belong to the certificate in %s", ErrConfig, o.KeyFile, o.CertFile)
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	m := &material{cert: cert}
	if o.ClientCAFile != "" {
		cas, err := readCerts(o.ClientCAFile)
		if err != nil {
			return nil, err
		}
		m.clientCAs = x509.NewCertPool()
		for _, ca := range cas {
			m.clientCAs.AddCert(ca)
		}
	}
	return m, nil
}

func isURI(s string) bool { return strings.HasPrefix(strings.ToLower(s), "pkcs11:") }

func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: %w", err)
	}
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: certificate %d: %v", ErrConfig, path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: %s holds no PEM CERTIFICATE", ErrConfig, path)
	}
	return certs, nil
}

// maxKeyFile bounds what is read from a key file; the largest PEM key
// (RSA 16384) is some 13 KB.
const maxKeyFile = 1 << 20

// readKey reads a PEM private key (PKCS#8, PKCS#1 RSA or SEC 1 EC).
func readKey(path string) (crypto.Signer, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	return parseKey(path, data)
}

// readKeyFile opens path once and checks (fstat) and reads the open file,
// so the mode checked is the mode of the bytes read; only a regular file is
// read. A file anyone may read is refused: a group may share it with the
// csrd user, the world may not.
func readKeyFile(path string) ([]byte, error) {
	// O_NONBLOCK: opening a named pipe must not wait for a writer; it is
	// refused below like any file that is not regular.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: %w", err)
	}
	switch {
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("%w: %s is not a regular file (%v)", ErrConfig, path, st.Mode().Type())
	case st.Mode().Perm()&0o004 != 0:
		return nil, fmt.Errorf("%w: %s is readable by everyone (mode %04o); chmod o-r it", ErrConfig, path, st.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: %w", err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrConfig, path, maxKeyFile)
	}
	return data, nil
}

// parseKey returns the first private key in the PEM data read from path.
func parseKey(path string, data []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("%w: %s holds no PEM private key", ErrConfig, path)
		}
		var (
			k   any
			err error
		)
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			continue // e.g. EC PARAMETERS before the key
		}
		if err != nil {
			// The parse error never contains key bytes.
			return nil, fmt.Errorf("%w: %s: %v", ErrConfig, path, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: %s: %T cannot sign", ErrConfig, path, k)
		}
		return s, nil
	}
}
