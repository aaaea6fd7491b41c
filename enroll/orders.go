package enroll

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/csrd/csrd/acmeca"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/store"
)

// job is one run of an order; callers waiting for the same order share it.
type job struct {
	done chan struct{}
	err  error
}

type jobs struct {
	mu sync.Mutex
	m  map[int64]*job
}

// orderTimeout bounds one run of an order: what is left is resumed by the
// background loop.
const orderTimeout = 15 * time.Minute

// start runs order o unless it is already running in this process, and
// returns its job. The run is detached from any caller: a client that
// stops waiting does not stop the order.
func (s *Service) start(o *store.Order) *job {
	s.jobs.mu.Lock()
	defer s.jobs.mu.Unlock()
	if j := s.jobs.m[o.ID]; j != nil {
		return j
	}
	j := &job{done: make(chan struct{})}
	s.jobs.m[o.ID] = j
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), orderTimeout)
		defer cancel()
		j.err = s.drive(ctx, o)
		s.jobs.mu.Lock()
		delete(s.jobs.m, o.ID)
		s.jobs.mu.Unlock()
		close(j.done)
	}()
	return j
}

func (s *Service) running(id int64) bool {
	s.jobs.mu.Lock()
	defer s.jobs.mu.Unlock()
	return s.jobs.m[id] != nil
}

// drive takes an open order from wherever it stands to a married
// certificate: create it at the CA (its URL recorded at once), complete
// it, marry the certificate through lifecycle.Import, close it. Each step
// can be repeated after a crash: the CA's order is read again, marriage is
// idempotent, closing a closed order is no error.
func (s *Service) drive(ctx context.Context, o *store.Order) error {
	log := s.log.With().Int64("order", o.ID).Int64("record", o.RecordID).Str("ca", o.CA).Logger()
	c := s.cas[strings.ToLower(o.CA)]
	if c == nil {
		err := newErr(ErrConflict, "request %d is for CA %q, which is no longer configured", o.ID, o.CA)
		_ = s.records.FailOrder(ctx, o.ID, err.Msg)
		return err
	}
	rec, err := s.records.Get(ctx, o.RecordID)
	if err != nil {
		return err
	}
	if rec.State == store.StateMarried { // married, not yet closed: a crash in between
		leaf, err := x509.ParseCertificate(rec.Cert.DER)
		if err != nil {
			return err
		}
		return s.close(ctx, c, o, leaf)
	}
	if rec.State != store.StatePending {
		err := newErr(ErrConflict, "the key of record %d is %s: nothing to enroll", rec.ID, rec.State)
		_ = s.records.FailOrder(ctx, o.ID, err.Msg)
		return err
	}
	der, err := parseCSR(rec.CSRPEM)
	if err != nil {
		return err
	}
	if o.URL == "" {
		if o.URL, err = s.createOrder(ctx, c, o, der); err != nil {
			log.Warn().Err(err).Msg("the CA did not create the order; the key stays pending")
			_ = s.records.FailOrder(ctx, o.ID, detail(err))
			return err
		}
	}
	chain, err := c.client.Complete(ctx, o.URL, der)
	if err == nil {
		err = s.marry(ctx, rec, chain)
	}
	if err != nil {
		return s.orderFailed(ctx, o, err)
	}
	return s.close(ctx, c, o, chain[0])
}

// createOrder asks the CA for an order for the CSR's names (replacing the
// certificate of o.Replaces, for a renewal) and records its URL.
func (s *Service) createOrder(ctx context.Context, c *caEntry, o *store.Order, der []byte) (string, error) {
	parsed, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return "", err
	}
	ids, err := acmeca.Identifiers(parsed)
	if err != nil {
		return "", newErr(ErrInvalid, "%s", strings.TrimPrefix(err.Error(), "acmeca: "))
	}
	url, err := c.client.Order(ctx, ids, s.replaces(ctx, o))
	if err != nil {
		return "", err
	}
	if err := s.records.SetOrderURL(ctx, o.ID, url); err != nil {
		return "", err
	}
	return url, nil
}

// replaces is the ARI identifier of the certificate a renewal replaces, ""
// when there is none or it has no identifier.
func (s *Service) replaces(ctx context.Context, o *store.Order) string {
	if o.Replaces == 0 {
		return ""
	}
	old, err := s.records.Get(ctx, o.Replaces)
	if err != nil {
		return ""
	}
	leaf, err := x509.ParseCertificate(old.Cert.DER)
	if err != nil {
		return ""
	}
	id, err := acmeca.CertID(leaf)
	if err != nil {
		return ""
	}
	return id
}

// marry hands the issued chain to lifecycle.Import, exactly as a client's
// Certificates/Import would, and checks it landed on this order's key.
func (s *Service) marry(ctx context.Context, rec *store.KeyRecord, chain []*x509.Certificate) error {
	var leaf, rest strings.Builder
	_ = pem.Encode(&leaf, &pem.Block{Type: "CERTIFICATE", Bytes: chain[0].Raw})
	for _, c := range chain[1:] {
		_ = pem.Encode(&rest, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	res, err := s.keys.Import(ctx, lifecycle.ImportRequest{Certificate: leaf.String(), Chain: rest.String(),
		Audit: s.internalAudit("import", rec.ID, fmt.Sprintf("certificate %X issued over ACME", chain[0].SerialNumber))})
	if err != nil {
		return err
	}
	if res.ID != rec.ID {
		return newErr(ErrConflict, "the issued certificate was married to record %d, not %d", res.ID, rec.ID)
	}
	return nil
}

// orderFailed records why an order did not finish: a refusal (the CA's,
// or a certificate that cannot be married) closes it, and the key stays
// pending for a new attempt; anything else leaves it open, to be resumed.
func (s *Service) orderFailed(ctx context.Context, o *store.Order, err error) error {
	msg := detail(err)
	if final(err) {
		if ferr := s.records.FailOrder(context.WithoutCancel(ctx), o.ID, msg); ferr != nil {
			s.log.Error().Err(ferr).Int64("order", o.ID).Msg("could not record the failed order")
		}
		s.log.Warn().Int64("order", o.ID).Int64("record", o.RecordID).Str("ca", o.CA).Str("reason", msg).Msg("order refused; the key stays pending")
		return err
	}
	if nerr := s.records.NoteOrderError(context.WithoutCancel(ctx), o.ID, msg); nerr != nil {
		s.log.Error().Err(nerr).Int64("order", o.ID).Msg("could not record the order's problem")
	}
	s.log.Warn().Int64("order", o.ID).Int64("record", o.RecordID).Str("ca", o.CA).Str("reason", msg).Msg("order interrupted; it will be resumed")
	return err
}

// final reports whether an order's failure is the end of it.
func final(err error) bool {
	return errors.Is(err, acmeca.ErrRefused) || errors.Is(err, ErrInvalid) || errors.Is(err, ErrConflict) ||
		errors.Is(err, lifecycle.ErrInvalidCertificate) || errors.Is(err, lifecycle.ErrConflict) || errors.Is(err, lifecycle.ErrNotFound)
}

// detail is what an order row and a client learn of a failure.
func detail(err error) string {
	var ce *acmeca.Error
	if errors.As(err, &ce) {
		return fmt.Sprintf("CA %q: %s: %s", ce.CA, ce.Op, ce.Detail)
	}
	s := err.Error()
	for _, p := range []string{"enroll: ", "lifecycle: "} {
		s = strings.TrimPrefix(s, p)
	}
	if len(s) > 500 {
		s = s[:500]
	}
	return s
}

// close records the married certificate: the order closed, its renewal
// scheduled, and for a renewal the old certificate's key due for
// retirement.
func (s *Service) close(ctx context.Context, c *caEntry, o *store.Order, leaf *x509.Certificate) error {
	cl := store.Closing{RenewAt: s.renewAt(ctx, c, leaf)}
	if o.Replaces != 0 {
		old, err := s.records.Get(ctx, o.Replaces)
		if err != nil {
			return err
		}
		cl.RetireOldAt = old.Cert.NotAfter.Add(c.cfg.RetireAfter())
		cl.Hook = c.cfg.DeployHook != ""
	}
	if err := s.records.CloseOrder(ctx, o.ID, cl); err != nil && !errors.Is(err, store.ErrConflict) {
		return err
	}
	s.log.Info().Int64("order", o.ID).Int64("record", o.RecordID).Str("ca", o.CA).Str("serial", fmt.Sprintf("%X", leaf.SerialNumber)).
		Time("not_after", leaf.NotAfter).Time("renew_at", cl.RenewAt).Int64("replaces", o.Replaces).Msg("certificate issued and married to its key")
	s.wake()
	return nil
}

// renewAt is when a certificate is to be renewed: renew_before before it
// expires (never before half its life, so a setting longer than the
// lifetime cannot renew in a loop), else a random moment of the CA's ARI
// window, else when two thirds of its life are over.
func (s *Service) renewAt(ctx context.Context, c *caEntry, leaf *x509.Certificate) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	if c.cfg.RenewBefore > 0 {
		return later(leaf.NotAfter.Add(-c.cfg.RenewBefore), leaf.NotBefore.Add(life/2))
	}
	if at, ok := s.ariTime(ctx, c, leaf); ok {
		return at
	}
	return leaf.NotAfter.Add(-life / 3)
}

// ariTime picks the renewal moment from the CA's renewal window (RFC 9773
// 4.2: uniformly at random inside it; now when it is over).
func (s *Service) ariTime(ctx context.Context, c *caEntry, leaf *x509.Certificate) (time.Time, bool) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ri, err := c.client.RenewalInfo(ctx, leaf)
	if err != nil {
		if !errors.Is(err, acmeca.ErrNoARI) {
			s.log.Warn().Err(err).Str("ca", c.cfg.Name).Msg("renewal information unavailable; renewing at two thirds of the lifetime")
		}
		return time.Time{}, false
	}
	span := ri.End.Sub(ri.Start)
	n, err := rand.Int(rand.Reader, big.NewInt(int64(span)))
	if err != nil {
		return time.Time{}, false
	}
	return later(ri.Start.Add(time.Duration(n.Int64())), time.Time{}), true
}

func later(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}
