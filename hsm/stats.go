package hsm

import "sync/atomic"

// SessionStats describes crypto11's session pool: how many of its Pool
// sessions are held by an operation now and how many operations wait for
// one. crypto11 does not expose its pool, so hsm counts the operations it
// sends through it; an operation holds exactly one session while it runs.
type SessionStats struct {
	Pool    int // sessions in the pool (MaxSessions minus crypto11's persistent one)
	InUse   int
	Waiting int
	// Raw and RawMax count the sessions hsm opens itself on the raw handle
	// (lookups, ping, EdDSA/ML-DSA work): open now and at most.
	Raw    int
	RawMax int
}

// sessionCounter counts operations that hold or wait for a pool session.
type sessionCounter struct {
	pool     int
	inFlight atomic.Int64
}

// enter marks one more operation using the pool; call the returned func
// when it is done.
func (c *sessionCounter) enter() func() {
	c.inFlight.Add(1)
	return func() { c.inFlight.Add(-1) }
}

// SessionStats returns the pool's current use, for metrics.
func (t *Token) SessionStats() SessionStats {
	n := int(t.sessions.inFlight.Load())
	p := t.sessions.pool
	return SessionStats{Pool: p, InUse: min(n, p), Waiting: max(0, n-p),
		Raw: len(t.rawSem) + len(t.workSem), RawMax: cap(t.rawSem) + cap(t.workSem)}
}
