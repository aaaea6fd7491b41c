package acmeca

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
)

// Config is one CA as csrd's configuration describes it, with its files
// already read.
type Config struct {
	Name      string
	Directory string
	// Roots verify the ACME server's TLS certificate (nil: system roots).
	Roots *x509.CertPool
	// ChainRoots are the roots an issued chain must verify to (nil: each
	// certificate must be signed by the next).
	ChainRoots *x509.CertPool
	Contact    []string
	EAB        *acme.ExternalAccountBinding
	Profile    string
	Solver     Solver
	UserAgent  string
}

// Account is where a CA's ACME account lives: its key (a signer that never
// leaves the HSM, made on first use) and, once registered, its URL.
type Account interface {
	// Key returns the account key and the account URL ("" before the
	// account is registered).
	Key(ctx context.Context) (key crypto.Signer, url string, err error)
	// SaveURL records the account URL the CA gave at registration.
	SaveURL(ctx context.Context, url string) error
}

// CA is csrd's connection to one ACME CA. It is safe for concurrent use.
type CA struct {
	cfg  Config
	acct Account
	hc   *http.Client

	mu     sync.Mutex
	client *acme.Client // registered; nil until the first success
	post   *poster
	d      *directory
	// stale: the CA no longer knows the recorded account; register again.
	stale bool
}

// requestTimeout bounds one HTTP exchange with the CA.
const requestTimeout = 30 * time.Second

// New returns the CA; nothing is sent to it before the first order, so a
// CA that is down never keeps csrd from starting.
func New(cfg Config, acct Account) *CA {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: cfg.Roots, MinVersion: tls.VersionTLS12}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "csrd"
	}
	if cfg.Solver == nil {
		cfg.Solver = None{}
	}
	return &CA{cfg: cfg, acct: acct, hc: &http.Client{Transport: tr, Timeout: requestTimeout}}
}

// Name is the CA's name in csrd's configuration.
func (c *CA) Name() string { return c.cfg.Name }

// dir returns the directory's extra fields, fetched once.
func (c *CA) dir(ctx context.Context) (*directory, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.d != nil {
		return c.d, nil
	}
	d, err := c.fetchDirectory(ctx)
	if err != nil {
		return nil, err
	}
	c.d = &d
	return c.d, nil
}

// ready returns a client whose account is registered: the key is taken
// from the Account and, the first time, registered with the CA (with EAB
// when configured). A registration that fails is tried again next time.
func (c *CA) ready(ctx context.Context) (*acme.Client, *poster, error) {
	d, err := c.dir(ctx)
	if err != nil {
		return nil, nil, caErr(c.cfg.Name, "read the directory", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != nil {
		return c.client, c.post, nil
	}
	key, url, err := c.acct.Key(ctx)
	if err != nil {
		return nil, nil, err
	}
	cl := &acme.Client{Key: key, HTTPClient: c.hc, DirectoryURL: c.cfg.Directory, UserAgent: c.cfg.UserAgent,
		KID: acme.KeyID(url), RetryBackoff: retryBackoff}
	if url == "" || c.stale {
		cl.KID = ""
		if _, err = c.register(ctx, cl); err != nil {
			return nil, nil, err
		}
		c.stale = false
	}
	c.client = cl
	c.post = &poster{hc: c.hc, key: key, nonceURL: d.NewNonce, ua: c.cfg.UserAgent}
	return c.client, c.post, nil
}

// register creates the account (or finds the one this key already has)
// and records its URL.
func (c *CA) register(ctx context.Context, cl *acme.Client) (string, error) {
	acct := &acme.Account{Contact: c.cfg.Contact, ExternalAccountBinding: c.cfg.EAB}
	a, err := cl.Register(ctx, acct, acme.AcceptTOS)
	url := string(cl.KID)
	switch {
	case errors.Is(err, acme.ErrAccountAlreadyExists):
	case err != nil:
		return "", caErr(c.cfg.Name, "register the ACME account", err)
	default:
		url = a.URI
	}
	if url == "" {
		return "", &Error{CA: c.cfg.Name, Op: "register the ACME account", Class: ErrRefused, Detail: "the CA gave no account URL"}
	}
	cl.KID = acme.KeyID(url)
	if err := c.acct.SaveURL(ctx, url); err != nil {
		return "", err
	}
	return url, nil
}

// forgetAccount drops the registered client after the CA said it does not
// know the account (RFC 8555 accountDoesNotExist): the next request
// registers the key again, which finds or re-creates the account.
func (c *CA) forgetAccount(err error) bool {
	var ae *acme.Error
	if !errors.As(err, &ae) || ae.ProblemType != "urn:ietf:params:acme:error:accountDoesNotExist" {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.client, c.stale = nil, true
	return true
}

// retryBackoff retries a CA's 5xx or 429 answers three times (x/crypto/acme
// would retry until the context ends, holding an enrollment for its whole
// timeout on a CA that is down).
func retryBackoff(n int, _ *http.Request, res *http.Response) time.Duration {
	if n > 3 {
		return 0
	}
	if d := res.Header.Get("Retry-After"); d != "" {
		if t, err := time.ParseDuration(d + "s"); err == nil && t <= 10*time.Second {
			return t
		}
	}
	return time.Duration(n) * 500 * time.Millisecond
}

// Revoke revokes cert at the CA, signed by the account key (RFC 8555 7.6).
// A certificate the CA already revoked counts as revoked.
func (c *CA) Revoke(ctx context.Context, certDER []byte, reason acme.CRLReasonCode) error {
	cl, _, err := c.ready(ctx)
	if err != nil {
		return err
	}
	return caErr(c.cfg.Name, "revoke the certificate", cl.RevokeCert(ctx, nil, certDER, reason))
}
