package auth

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrThrottled: the source must wait before it may try again; errors.As
// with *ThrottledError says how long.
var ErrThrottled = errors.New("auth: too many authentication attempts")

// ThrottledError refuses an attempt without looking at its credentials.
type ThrottledError struct {
	// RetryAfter is how long the source should wait: the lockout left, or
	// a second when only attempts still in flight stand in the way.
	RetryAfter time.Duration
	// Locked: the source is locked out (as opposed to having as many
	// attempts in flight as it may).
	Locked bool
}

func (e *ThrottledError) Error() string {
	if e.Locked {
		return fmt.Sprintf("auth: source locked out for %v after failed authentications", e.RetryAfter)
	}
	return "auth: source has too many authentication attempts in flight"
}

// Is makes errors.Is(err, ErrThrottled) true.
func (e *ThrottledError) Is(target error) bool { return target == ErrThrottled }

// Throttle slows down sources (client addresses) that keep guessing.
//
// Failures are counted per source and, within it, per claimed identity (a
// user name, a token id). After Limit failures a source is locked out for
// Lockout; every further failure while the count stands doubles the
// lockout, up to an hour. A success clears only the failures of the
// identity that succeeded, from that source: one valid credential does not
// buy a source fresh guesses at another.
//
// Failures are also counted per identity across sources. An identity that
// has had Limit failures is under attack: a source may then have only one
// attempt at a time, and its first failure locks it out. The identity
// itself is never locked, so knowing a user name is not enough to lock its
// owner out; only the sources that guess are.
//
// An attempt is reserved with Begin before its credentials are checked and
// counts as a failure until its verdict is in, so parallel guesses cannot
// all pass the check before the first failure lands: of any number sent at
// once, at most the remaining allowance is verified. Limit 0 disables
// throttling.
type Throttle struct {
	limit      int
	lockout    time.Duration
	maxLockout time.Duration
	reset      time.Duration
	now        func() time.Time

	mu         sync.Mutex
	sources    map[string]*source
	identities map[string]*identity
}

// source is one client address's record.
type source struct {
	failed   int // failures charged to the source
	inFlight int // attempts reserved, verdict pending
	last     time.Time
	until    time.Time
	// byID says which identity each failure was charged for, so that a
	// success clears exactly those.
	byID map[string]charge
}

// charge is what one identity's failures cost a source.
type charge struct {
	failures int // real failures, also counted on the identity
	charged  int // added to source.failed (more when the identity was under attack)
}

// identity is one claimed identity's record across sources.
type identity struct {
	failed   int
	inFlight int
	last     time.Time
}

const (
	// maxEntries bounds each table; beyond it, forgotten entries are
	// pruned first, then the table is cleared (an attacker spraying
	// addresses or names gains a fresh start, but cannot exhaust memory).
	maxEntries = 65536
	// maxIDsPerSource bounds one source's per-identity charges; failures
	// beyond it still count against the source but no success clears them.
	maxIDsPerSource = 64
	// inFlightRetry is the Retry-After for an attempt refused because the
	// source's allowance is taken by attempts still being verified.
	inFlightRetry = time.Second
)

// NewThrottle returns a Throttle that locks a source out for lockout after
// limit failures, doubling up to an hour (or the lockout, if longer).
// Counts are forgotten after 15 minutes (or twice the lockout) without
// failures and without a lockout in force.
func NewThrottle(limit int, lockout time.Duration) *Throttle {
	return &Throttle{
		limit:      limit,
		lockout:    lockout,
		maxLockout: max(lockout, time.Hour),
		reset:      max(15*time.Minute, 2*lockout),
		now:        time.Now,
		sources:    map[string]*source{},
		identities: map[string]*identity{},
	}
}

// SetClock replaces the clock (tests).
func (t *Throttle) SetClock(now func() time.Time) { t.now = now }

func (t *Throttle) off() bool { return t == nil || t.limit <= 0 }

// Locked reports whether src is locked out and for how much longer.
func (t *Throttle) Locked(src string) (time.Duration, bool) {
	if t.off() {
		return 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.sources[src]; ok {
		if d := s.until.Sub(t.now()); d > 0 {
			return d, true
		}
	}
	return 0, false
}

// Attempt is an authentication attempt reserved by Begin. Exactly one of
// Fail, Succeed or Release ends it; later calls do nothing.
type Attempt struct {
	t     *Throttle
	src   string
	id    string
	s     *source
	ident *identity
}

// Begin reserves an attempt by src at the claimed identity id, or refuses
// it with a *ThrottledError: when src is locked out, or when its failures
// and the attempts it has in flight already reach what it may try.
func (t *Throttle) Begin(src, id string) (*Attempt, error) {
	if t.off() {
		return &Attempt{}, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	s := t.sourceOf(src, now)
	if d := s.until.Sub(now); d > 0 {
		return nil, &ThrottledError{RetryAfter: d, Locked: true}
	}
	// After a lockout has run out the source may probe once at a time.
	allowed := max(t.limit-s.failed, 1)
	if t.underAttack(id, now) {
		allowed = 1
	}
	if s.inFlight >= allowed {
		return nil, &ThrottledError{RetryAfter: inFlightRetry}
	}
	// Only a reserved attempt makes an identity entry: refusals cost no
	// memory, so they cannot be used to flush the table.
	ident := t.identityOf(id, now)
	s.inFlight++
	ident.inFlight++
	return &Attempt{t: t, src: src, id: id, s: s, ident: ident}, nil
}

// Fail records the attempt as a failed guess. The reservation is released
// and the failure counted under one lock: in between, another attempt could
// take the slot the failure is about to close.
func (a *Attempt) Fail() { a.end((*Throttle).fail) }

// Succeed records the attempt as a success: the failures src made at this
// identity are forgiven.
func (a *Attempt) Succeed() {
	a.end(func(t *Throttle, a *Attempt) { t.forgive(a.src, a.id, a.s) })
}

// Release ends the attempt without a verdict (the client went away, the
// verification could not run).
func (a *Attempt) Release() { a.end(nil) }

// end releases the reservation and applies verdict, both under the
// throttle's lock; it does nothing when the attempt was already ended (or
// throttling is off).
func (a *Attempt) end(verdict func(*Throttle, *Attempt)) {
	if a == nil || a.t == nil {
		return
	}
	t := a.t
	a.t = nil
	t.mu.Lock()
	defer t.mu.Unlock()
	a.s.inFlight--
	a.ident.inFlight--
	if verdict != nil {
		verdict(t, a)
	}
}

// Succeed forgives src's failures at identity id without a reserved
// attempt (a credential proven without a fresh check).
func (t *Throttle) Succeed(src, id string) {
	if t.off() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.sources[src]; s != nil {
		t.forgive(src, id, s)
	}
}

// fail counts a failed guess; the caller holds t.mu.
func (t *Throttle) fail(a *Attempt) {
	now := t.now()
	s, ident := a.s, a.ident
	t.forget(s, ident, now)
	charged := 1
	if ident.failed >= t.limit && s.failed+1 < t.limit {
		// Guessing at an identity already under attack locks the source
		// at once.
		charged = t.limit - s.failed
	}
	ident.failed++
	ident.last = now
	s.failed += charged
	s.last = now
	if c, ok := s.byID[a.id]; ok || len(s.byID) < maxIDsPerSource {
		s.byID[a.id] = charge{failures: c.failures + 1, charged: c.charged + charged}
	}
	if s.failed >= t.limit {
		d := t.lockout
		for i := s.failed - t.limit; i > 0 && d < t.maxLockout; i-- {
			d *= 2
		}
		s.until = now.Add(min(d, t.maxLockout))
	}
}

// forgive clears what src's failures at id cost, on the source and on the
// identity; a lockout stands while the source's other failures still
// reach the limit. The caller holds t.mu.
func (t *Throttle) forgive(src, id string, s *source) {
	c, ok := s.byID[id]
	if !ok {
		return
	}
	delete(s.byID, id)
	s.failed = max(0, s.failed-c.charged)
	if ident := t.identities[id]; ident != nil {
		ident.failed = max(0, ident.failed-c.failures)
	}
	if s.failed < t.limit {
		s.until = time.Time{}
	}
	if s.failed == 0 && s.inFlight == 0 && t.sources[src] == s {
		delete(t.sources, src)
	}
}

// forget drops counts that have been quiet for the reset interval.
func (t *Throttle) forget(s *source, ident *identity, now time.Time) {
	t.forgetSource(s, now)
	if now.Sub(ident.last) > t.reset {
		ident.failed = 0
	}
}

// forgetSource drops a source's count once it has been quiet for the reset
// interval after its last failure and after its lockout: a locked source
// cannot fail, so the lockout does not count as quiet, and the doubling
// reaches its bound.
func (t *Throttle) forgetSource(s *source, now time.Time) {
	quietSince := s.last
	if s.until.After(quietSince) {
		quietSince = s.until
	}
	if now.Sub(quietSince) > t.reset {
		s.failed = 0
		clear(s.byID)
	}
}

func (t *Throttle) sourceOf(src string, now time.Time) *source {
	s, ok := t.sources[src]
	if !ok {
		if len(t.sources) >= maxEntries {
			t.prune(now)
		}
		s = &source{byID: map[string]charge{}}
		t.sources[src] = s
	}
	t.forgetSource(s, now)
	return s
}

// underAttack reports whether identity id has had limit failures (or has
// that many attempts in flight) within the reset interval.
func (t *Throttle) underAttack(id string, now time.Time) bool {
	ident, ok := t.identities[id]
	if !ok {
		return false
	}
	failed := ident.failed
	if now.Sub(ident.last) > t.reset {
		failed = 0
	}
	return failed+ident.inFlight >= t.limit
}

func (t *Throttle) identityOf(id string, now time.Time) *identity {
	ident, ok := t.identities[id]
	if !ok {
		if len(t.identities) >= maxEntries {
			t.prune(now)
		}
		ident = &identity{}
		t.identities[id] = ident
	}
	if now.Sub(ident.last) > t.reset {
		ident.failed = 0
	}
	return ident
}

func (t *Throttle) prune(now time.Time) {
	for k, s := range t.sources {
		if now.Sub(s.last) > t.reset && !now.Before(s.until) && s.inFlight == 0 {
			delete(t.sources, k)
		}
	}
	for k, i := range t.identities {
		if now.Sub(i.last) > t.reset && i.inFlight == 0 {
			delete(t.identities, k)
		}
	}
	if len(t.sources) >= maxEntries {
		clear(t.sources)
	}
	if len(t.identities) >= maxEntries {
		clear(t.identities)
	}
}
