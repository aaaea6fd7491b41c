package enroll

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/acme"

	"github.com/csrd/csrd/acmeca"
	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/store"
)

// KeyReads is what enroll reads of the key records.
type KeyReads interface {
	Get(ctx context.Context, id int64) (*store.KeyRecord, error)
	FindBySPKI(ctx context.Context, spkiSHA256 []byte) ([]*store.KeyRecord, error)
	RenewalKeys(ctx context.Context, id int64) ([]*store.KeyRecord, error)
	MarriedNotAfter(ctx context.Context) ([]time.Time, error)
}

// AccountRecords keep where each CA's account key lives, one per token.
type AccountRecords interface {
	GetAccount(ctx context.Context, of store.AccountOf) (*store.Account, error)
	BeginAccount(ctx context.Context, a *store.Account) (*store.Account, error)
	SetAccountURL(ctx context.Context, of store.AccountOf, url string) error
}

// OrderRecords persist the ACME orders.
type OrderRecords interface {
	OpenOrder(ctx context.Context, recordID int64, ca string, replaces int64) (*store.Order, bool, error)
	SetOrderURL(ctx context.Context, id int64, url string) error
	NoteOrderError(ctx context.Context, id int64, msg string) error
	FailOrder(ctx context.Context, id int64, msg string) error
	CloseOrder(ctx context.Context, id int64, c store.Closing) error
	GetOrder(ctx context.Context, id int64) (*store.Order, error)
	LatestOrder(ctx context.Context, recordID int64) (*store.Order, error)
	OpenOrders(ctx context.Context) ([]*store.Order, error)
}

// RenewalRecords persist each enrolled certificate's life.
type RenewalRecords interface {
	GetRenewal(ctx context.Context, id int64) (*store.Renewal, error)
	ListRenewals(ctx context.Context, st store.RenewalState) ([]*store.Renewal, error)
	PendingHooks(ctx context.Context) ([]*store.Renewal, error)
	SetRenewAt(ctx context.Context, id int64, at time.Time) error
	ForceRenewal(ctx context.Context, id int64) error
	ClaimRenewal(ctx context.Context, id int64) error
	RetryRenewal(ctx context.Context, id int64) error
	SetRenewalKey(ctx context.Context, id, newID int64) error
	DeferRenewal(ctx context.Context, id int64, st store.RenewalState, msg string, next time.Time) error
	ReleaseRenewal(ctx context.Context, id int64, msg string, next time.Time) error
	HookDone(ctx context.Context, id int64) error
	HookFailed(ctx context.Context, id int64, msg string, next time.Time) error
	MarkRenewalRetired(ctx context.Context, id int64) error
}

// Records is the database as enroll sees it (*store.Store).
type Records interface {
	KeyReads
	AccountRecords
	OrderRecords
	RenewalRecords
	AppendAudit(ctx context.Context, e *store.AuditEntry) error
}

// Keys is the key lifecycle (*lifecycle.Service): new keys for renewals,
// marriage of issued certificates, retirement.
type Keys interface {
	Generate(ctx context.Context, req lifecycle.GenerateRequest) (*lifecycle.GenerateResult, error)
	Import(ctx context.Context, req lifecycle.ImportRequest) (*lifecycle.ImportResult, error)
	Retire(ctx context.Context, id int64, req lifecycle.RetireRequest) error
	// Locate is nil when this node reaches the token of rec's key, else a
	// *lifecycle.ElsewhereError naming it.
	Locate(rec *store.KeyRecord) error
	// ClaimWork leases rec's background work to this node unless its
	// token is out of reach or another live node holds it; TakeWork
	// leases it for work just created here (see fleet.go).
	ClaimWork(ctx context.Context, rec *store.KeyRecord) (bool, error)
	TakeWork(ctx context.Context, rec *store.KeyRecord) error
}

// AccountToken is the token that holds the CAs' ACME account keys
// (lifecycle.HSMToken: an *hsm.Token whose new keys are crypto.Signers).
type AccountToken interface {
	Label() string
	Serial() string
	NewKeyID(ctx context.Context) ([]byte, error)
	FindKey(ctx context.Context, ref hsm.KeyRef) (*hsm.Key, error)
	// GenerateKeyPair makes the key as every csrd key is made: by the
	// token's profile (template shape, usage), refused under
	// hsm.require_sign_only where the token cannot restrict it to signing.
	GenerateKeyPair(ctx context.Context, spec hsm.KeySpec, ref hsm.KeyRef) (crypto.Signer, error)
	// Usage is what a key of spec gets on the token, by its profile.
	Usage(spec hsm.KeySpec) hsm.Usage
}

// Options configure a Service.
type Options struct {
	CAs     []config.CA
	Records Records
	Keys    Keys
	Token   AccountToken
	Log     zerolog.Logger
	// Wait bounds how long Enroll waits for the CA before it answers
	// PENDING (csrd's request_timeout).
	Wait time.Duration
	// CertDir receives the certificate files handed to deploy hooks.
	CertDir string
	// RetryBase is the first pause after a failed background attempt
	// (default one minute); it doubles up to an hour.
	RetryBase time.Duration
}

// Service runs enrollment and renewal.
type Service struct {
	cas       map[string]*caEntry // by lower-case name
	names     []string            // configuration order
	records   Records
	keys      Keys
	tok       AccountToken
	log       zerolog.Logger
	wait      time.Duration
	certDir   string
	retryBase time.Duration
	http01    map[string]*acmeca.HTTP01 // listen address → responder
	metrics   *Metrics
	now       func() time.Time
	// started is when this service began: a renewal left "renewing" by
	// an earlier run (a crash) is resumed at once, one renewing since
	// then only after a lease (another process may hold it).
	started time.Time

	jobs  jobs
	wakeC chan struct{}
	ari   ariChecks
}

type caEntry struct {
	cfg    config.CA
	client *acmeca.CA
}

// New builds the service and its CA clients. It reads the files the
// configuration names (roots, EAB key, TSIG secret) and fails on a bad one,
// but contacts no CA: a CA that is down shows at the first enrollment.
func New(o Options) (*Service, error) {
	s := &Service{
		cas: map[string]*caEntry{}, records: o.Records, keys: o.Keys, tok: o.Token, log: o.Log,
		wait: o.Wait, certDir: o.CertDir, retryBase: o.RetryBase, http01: map[string]*acmeca.HTTP01{},
		metrics: newMetrics(o.Records), now: time.Now, started: time.Now(), wakeC: make(chan struct{}, 1),
		jobs: jobs{m: map[int64]*job{}}, ari: ariChecks{m: map[int64]time.Time{}},
	}
	if s.wait <= 0 {
		s.wait = time.Minute
	}
	if s.retryBase <= 0 {
		s.retryBase = time.Minute
	}
	for _, c := range o.CAs {
		cc, err := s.clientConfig(c)
		if err != nil {
			return nil, err
		}
		s.cas[strings.ToLower(c.Name)] = &caEntry{cfg: c, client: acmeca.New(cc, &tokenAccount{s: s, ca: c.Name})}
		s.names = append(s.names, c.Name)
	}
	return s, nil
}

// clientConfig turns a cas: entry into the CA client's configuration.
func (s *Service) clientConfig(c config.CA) (acmeca.Config, error) {
	cc := acmeca.Config{Name: c.Name, Directory: c.ACME.Directory, Contact: c.ACME.Contact, Profile: c.ACME.Profile,
		UserAgent: "csrd"}
	var err error
	if cc.Roots, err = readPool(c.ACME.RootsFile); err != nil {
		return cc, fmt.Errorf("enroll: CA %q: roots_file: %w", c.Name, err)
	}
	if cc.ChainRoots, err = readPool(c.ACME.ChainRootsFile); err != nil {
		return cc, fmt.Errorf("enroll: CA %q: chain_roots_file: %w", c.Name, err)
	}
	if c.ACME.EAB != nil {
		key, err := config.ReadEABKey(c.ACME.EAB.HMACFile)
		if err != nil {
			return cc, fmt.Errorf("enroll: CA %q: %w", c.Name, err)
		}
		cc.EAB = &acme.ExternalAccountBinding{KID: c.ACME.EAB.KID, Key: key}
	}
	cc.Solver, err = s.solver(c)
	return cc, err
}

func (s *Service) solver(c config.CA) (acmeca.Solver, error) {
	switch c.ACME.ChallengeType() {
	case config.ChallengeHTTP01:
		h := s.http01[c.ACME.HTTP01Listen]
		if h == nil {
			h = acmeca.NewHTTP01()
			s.http01[c.ACME.HTTP01Listen] = h
		}
		return h, nil
	case config.ChallengeDNS01:
		d := c.ACME.DNS01
		secret, err := config.ReadTSIGSecret(d.TSIGSecretFile)
		if err != nil {
			return nil, fmt.Errorf("enroll: CA %q: %w", c.Name, err)
		}
		return &acmeca.DNS01{Server: d.Server, Zone: d.Zone, KeyName: d.TSIGName, Algorithm: d.TSIGAlgorithm, Secret: secret, Net: d.Transport}, nil
	}
	return acmeca.None{}, nil
}

// readPool reads a PEM file of certificates ("" is nil: not configured).
func readPool(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return p, nil
}

// ca returns the CA named name (Keyfactor's "host\\Name" form too); ""
// names the only CA when exactly one is configured.
func (s *Service) ca(name string) (*caEntry, error) {
	if name == "" {
		if len(s.names) == 1 {
			return s.cas[strings.ToLower(s.names[0])], nil
		}
		return nil, newErr(ErrInvalid, "CertificateAuthority is required: csrd enrolls with %s", s.caList())
	}
	short := name
	if i := strings.LastIndexByte(name, '\\'); i >= 0 {
		short = name[i+1:]
	}
	if c := s.cas[strings.ToLower(short)]; c != nil {
		return c, nil
	}
	return nil, newErr(ErrInvalid, "CertificateAuthority %q is not a CA this csrd enrolls with (%s)", name, s.caList())
}

func (s *Service) caList() string {
	if len(s.names) == 0 {
		return "none is configured (cas: in csrd's configuration)"
	}
	return "configured: " + strings.Join(s.names, ", ")
}

// wake nudges the background loop (a certificate was married, a renewal
// forced).
func (s *Service) wake() {
	select {
	case s.wakeC <- struct{}{}:
	default:
	}
}

// ariChecks remembers when each certificate's renewal window was last asked.
type ariChecks struct {
	mu sync.Mutex
	m  map[int64]time.Time
}
