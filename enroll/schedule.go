package enroll

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/csrd/csrd/store"
)

// Bounds of the background loop.
const (
	// maxSleep: the loop looks at the database at least this often, so a
	// change by csrctl (a forced renewal) is seen without a signal.
	maxSleep = time.Minute
	// ariEvery: how often a certificate's ARI window is asked again; the
	// CA may move it (e.g. earlier, after an incident).
	ariEvery = 6 * time.Hour
	// renewers bounds renewals running at once.
	renewers = 4
)

// Run serves the http-01 responders and runs the background loop until ctx
// ends: it resumes open orders (a restart's or a CA outage's), renews
// certificates when due, runs deploy hooks and retires renewed keys after
// expiry. Errors are logged and retried; Run never stops csrd.
func (s *Service) Run(ctx context.Context) {
	s.serveHTTP01(ctx)
	var inflight sync.Map
	sem := make(chan struct{}, renewers)
	for {
		next := s.tick(ctx, &inflight, sem)
		wait := time.Until(next)
		t := time.NewTimer(max(wait, 10*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.wakeC:
		case <-t.C:
		}
		t.Stop()
	}
}

// tick does the work that is due and returns when the next is.
func (s *Service) tick(ctx context.Context, inflight *sync.Map, sem chan struct{}) time.Time {
	next := s.now().Add(maxSleep)
	for _, step := range []func(context.Context) (time.Time, error){
		s.resumeOrders,
		func(ctx context.Context) (time.Time, error) { return s.renewDue(ctx, inflight, sem) },
		s.runHooks,
		s.retireDue,
	} {
		at, err := step(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Error().Err(err).Msg("enrollment background step failed; retrying")
			at = s.now().Add(s.retryBase)
		}
		if !at.IsZero() && at.Before(next) {
			next = at
		}
	}
	return next
}

// resumeOrders starts every open order not running in this process: those
// a crash interrupted at once, those a CA outage interrupted after a pause.
func (s *Service) resumeOrders(ctx context.Context) (time.Time, error) {
	orders, err := s.records.OpenOrders(ctx)
	if err != nil {
		return time.Time{}, err
	}
	var next time.Time
	for _, o := range orders {
		if s.running(o.ID) || o.Replaces != 0 { // a renewal's order is its renewal's
			continue
		}
		if at := o.Updated.Add(s.retryBase); o.Error != "" && at.After(s.now()) {
			next = earliest(next, at)
			continue
		}
		if !s.mine(ctx, o.RecordID) {
			continue
		}
		s.log.Info().Int64("order", o.ID).Int64("record", o.RecordID).Str("ca", o.CA).Msg("resuming an open order")
		s.start(o)
	}
	return next, nil
}

// renewDue starts the renewals that are due: scheduled ones whose time
// has come, and renewing ones a failure (after its back-off) or a crash
// (after a lease, in case another process holds them) left.
func (s *Service) renewDue(ctx context.Context, inflight *sync.Map, sem chan struct{}) (time.Time, error) {
	var next time.Time
	for _, st := range []store.RenewalState{store.RenewalScheduled, store.RenewalRenewing} {
		rs, err := s.records.ListRenewals(ctx, st)
		if err != nil {
			return time.Time{}, err
		}
		for _, r := range rs {
			at, err := s.dueAt(ctx, r)
			if err != nil {
				return time.Time{}, err
			}
			if at.After(s.now()) {
				next = earliest(next, at)
				continue
			}
			if _, busy := inflight.Load(r.RecordID); busy || !s.mine(ctx, r.RecordID) {
				continue
			}
			s.goRenew(ctx, r, inflight, sem)
		}
	}
	return next, nil
}

// dueAt is when renewal r is to run next.
func (s *Service) dueAt(ctx context.Context, r *store.Renewal) (time.Time, error) {
	if r.State == store.RenewalRenewing {
		switch {
		case !r.NextAttempt.IsZero():
			return r.NextAttempt, nil
		case r.Updated.Before(s.started):
			return s.now(), nil // left by a run before this one: a crash
		}
		return r.Updated.Add(s.retryBase), nil // csrctl's, perhaps still running
	}
	at, err := s.scheduledAt(ctx, r)
	if err != nil || r.NextAttempt.IsZero() {
		return at, err
	}
	return later(at, r.NextAttempt), nil
}

// scheduledAt is a scheduled certificate's renewal time, computed and
// recorded the first time, and moved when the CA's ARI window moves.
func (s *Service) scheduledAt(ctx context.Context, r *store.Renewal) (time.Time, error) {
	c := s.cas[strings.ToLower(r.CA)]
	if c == nil || !r.RenewAt.IsZero() && (c.cfg.RenewBefore > 0 || !s.ari.due(r.RecordID, s.now())) {
		return r.RenewAt, nil
	}
	rec, err := s.records.Get(ctx, r.RecordID)
	if err != nil {
		return time.Time{}, err
	}
	leaf, err := x509.ParseCertificate(rec.Cert.DER)
	if err != nil {
		return r.RenewAt, nil // not married (retired meanwhile): renew marks it
	}
	s.ari.checked(r.RecordID, s.now())
	at := s.renewAt(ctx, c, leaf)
	if r.RenewAt.IsZero() || at.Before(r.RenewAt) {
		if err := s.records.SetRenewAt(ctx, r.RecordID, at); err != nil && !errors.Is(err, store.ErrConflict) {
			return time.Time{}, err
		}
		return at, nil
	}
	return r.RenewAt, nil
}

// goRenew runs one renewal in the background, at most once per
// certificate in this process and at most renewers at once.
func (s *Service) goRenew(ctx context.Context, r *store.Renewal, inflight *sync.Map, sem chan struct{}) {
	if _, busy := inflight.LoadOrStore(r.RecordID, true); busy {
		return
	}
	go func() {
		defer inflight.Delete(r.RecordID)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-sem }()
		if _, err := s.renew(ctx, r); err != nil && !errors.Is(err, store.ErrConflict) {
			s.log.Debug().Err(err).Int64("record", r.RecordID).Msg("renewal attempt ended with an error")
		}
	}()
}

// retireDue retires the old keys of renewed certificates once they have
// expired and the grace period (retire_after_expiry) has passed.
func (s *Service) retireDue(ctx context.Context) (time.Time, error) {
	rs, err := s.records.ListRenewals(ctx, store.RenewalRenewed)
	if err != nil {
		return time.Time{}, err
	}
	var next time.Time
	for _, r := range rs {
		if r.RetireAt.After(s.now()) {
			next = earliest(next, r.RetireAt)
			continue
		}
		if !s.mine(ctx, r.RecordID) {
			continue
		}
		reason := "renewed by record " + itoa(r.NewRecordID) + "; its certificate has expired"
		if err := s.retire(ctx, r.RecordID, reason, s.internalAudit("retire", r.RecordID, reason)); err != nil {
			s.log.Error().Err(err).Int64("record", r.RecordID).Msg("could not retire a renewed key; trying again later")
			next = earliest(next, s.now().Add(s.retryBase))
		}
	}
	return next, nil
}

// internalAudit is the audit row of something csrd does on its own.
func (s *Service) internalAudit(op string, id int64, detail string) *store.AuditEntry {
	return &store.AuditEntry{Actor: "csrd", AuthMethod: "internal", Source: "enrollment", Operation: op,
		Result: store.AuditOK, Status: 200, RecordID: id, KeyLabel: "csrd-" + itoa(id),
		RequestID: op + "-" + itoa(id), Detail: detail}
}

// serveHTTP01 starts the plain-HTTP listener of every http-01 responder. A
// listener that cannot start is logged, not fatal: its CA's http-01
// challenges fail (with the CA's detail) until csrd can listen.
func (s *Service) serveHTTP01(ctx context.Context) {
	if err := s.ServeChallenges(ctx); err != nil {
		s.log.Error().Err(err).Msg("http-01 responder cannot listen; http-01 challenges will fail (port 80 needs CAP_NET_BIND_SERVICE)")
	}
}

// ServeChallenges starts the http-01 responders' listeners until ctx ends
// (Run does; csrctl renew does for its own renewal). It returns the
// listeners that could not start; the others serve.
func (s *Service) ServeChallenges(ctx context.Context) error {
	var errs []error
	for addr, h := range s.http01 {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("enroll: http-01 responder on %s: %w", addr, err))
			continue
		}
		srv := h.Server()
		go func() { _ = srv.Serve(ln) }()
		go func() {
			<-ctx.Done()
			_ = srv.Close()
		}()
		s.log.Info().Str("listen", ln.Addr().String()).Msg("http-01 responder listening")
	}
	return errors.Join(errs...)
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

func (a *ariChecks) due(id int64, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	last, ok := a.m[id]
	if !ok { // first sight since start: the time recorded at close stands
		a.m[id] = now
		return false
	}
	return now.Sub(last) >= ariEvery
}

func (a *ariChecks) checked(id int64, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.m[id] = now
}
