package auth

import (
	"sync"
	"time"
)

// Throttle slows down sources (client IP addresses) that keep failing
// authentication. After Limit failures a source is locked out for Lockout;
// every further failure while the count stands doubles the lockout, up to
// MaxLockout. A success, or Reset without failures, clears the source.
// Limit 0 disables throttling.
type Throttle struct {
	limit      int
	lockout    time.Duration
	maxLockout time.Duration
	reset      time.Duration
	now        func() time.Time

	mu      sync.Mutex
	sources map[string]*failures
}

type failures struct {
	n     int
	last  time.Time
	until time.Time
}

// maxSources bounds the table; beyond it, forgotten entries are pruned
// first, then the table is cleared (an attacker spraying addresses gains a
// fresh start, but cannot exhaust memory).
const maxSources = 65536

// NewThrottle returns a Throttle. reset is how long a source must stay quiet
// before its failure count is forgotten.
func NewThrottle(limit int, lockout time.Duration) *Throttle {
	return &Throttle{
		limit:      limit,
		lockout:    lockout,
		maxLockout: max(lockout, time.Hour),
		reset:      max(15*time.Minute, 2*lockout),
		now:        time.Now,
		sources:    map[string]*failures{},
	}
}

// SetClock replaces the clock (tests).
func (t *Throttle) SetClock(now func() time.Time) { t.now = now }

// Blocked reports whether src is locked out and for how much longer.
func (t *Throttle) Blocked(src string) (time.Duration, bool) {
	if t == nil || t.limit <= 0 {
		return 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.sources[src]
	if !ok {
		return 0, false
	}
	if d := f.until.Sub(t.now()); d > 0 {
		return d, true
	}
	return 0, false
}

// Fail records a failed attempt from src.
func (t *Throttle) Fail(src string) {
	if t == nil || t.limit <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	f, ok := t.sources[src]
	if !ok {
		if len(t.sources) >= maxSources {
			t.prune(now)
		}
		f = &failures{}
		t.sources[src] = f
	}
	if now.Sub(f.last) > t.reset {
		f.n = 0
	}
	f.n++
	f.last = now
	if f.n >= t.limit {
		d := t.lockout
		for i := f.n - t.limit; i > 0 && d < t.maxLockout; i-- {
			d *= 2
		}
		f.until = now.Add(min(d, t.maxLockout))
	}
}

// Succeed forgets src's failures.
func (t *Throttle) Succeed(src string) {
	if t == nil || t.limit <= 0 {
		return
	}
	t.mu.Lock()
	delete(t.sources, src)
	t.mu.Unlock()
}

func (t *Throttle) prune(now time.Time) {
	for k, f := range t.sources {
		if now.Sub(f.last) > t.reset && !now.Before(f.until) {
			delete(t.sources, k)
		}
	}
	if len(t.sources) >= maxSources {
		clear(t.sources)
	}
}
