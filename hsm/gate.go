package hsm

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// This file is the Token's gate: every operation enters it (begin) and
// leaves it (end), and while the Token is down — reconnecting, or never
// connected — or closed, it refuses new ones at once with ErrUnavailable.
// The monitor (recover.go) closes the gate and waits for it to drain before
// it touches the connection, so operations read the connection fields
// without locks.

// gate counts operations in flight and refuses new ones while the Token is
// down (reconnecting) or closed. Unlike a sync.RWMutex it lets an operation
// begin another one (GenerateKeyPair cleans up with DestroyKey) without
// deadlocking against a waiting reconnect: once down, nested begins fail fast.
type gate struct {
	mu       sync.Mutex
	idle     *sync.Cond // signalled when inflight drops to 0; made on first use
	inflight int
	down     error  // non-nil while not connected: the last failure
	label    string // the token's, for refusals
	finished uint64 // operations that have left: proof the module still answers
	loads    loadBudget
}

// cond returns idle, creating it so that the zero gate is ready; g.mu is held.
func (g *gate) cond() *sync.Cond {
	if g.idle == nil {
		g.idle = sync.NewCond(&g.mu)
	}
	return g.idle
}

func (g *gate) enter(op string, closed *atomic.Bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.loads.relogging { // begun only with nothing in flight: no nested enter waits here
		g.cond().Wait()
	}
	switch {
	case closed.Load():
		return classErr(op, ErrUnavailable, "token closed")
	case g.down != nil:
		return g.refusal(op)
	}
	g.inflight++
	return nil
}

// refusal is the ErrUnavailable error for op while the Token is down; its
// Reason names the token and why (the last connection attempt's failure).
// g.mu is held.
func (g *gate) refusal(op string) error {
	why := fmt.Sprintf("token %q: %s", g.label, Reason(g.down))
	return &Error{Op: op, Err: ErrUnavailable, cause: errors.New("not connected: " + Reason(g.down)), why: why}
}

func (g *gate) leave() {
	g.mu.Lock()
	g.finished++
	g.inflight--
	if g.inflight == 0 {
		g.cond().Broadcast()
	}
	g.mu.Unlock()
}

// progress returns how many operations have finished so far, and whether
// any besides the caller (a health check) is still running.
func (g *gate) progress() (finished uint64, busy bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.finished, g.inflight > 1
}

// close marks the Token down for cause and waits until nothing is in flight.
func (g *gate) close(cause error) {
	g.mu.Lock()
	g.down = cause
	for g.inflight > 0 || g.loads.relogging {
		g.cond().Wait()
	}
	g.mu.Unlock()
}

// drain waits until nothing is in flight (Close: closed is already set).
func (g *gate) drain() {
	g.mu.Lock()
	for g.inflight > 0 || g.loads.relogging {
		g.cond().Wait()
	}
	g.mu.Unlock()
}

// Healthy returns nil while the Token is connected, else an ErrUnavailable
// error saying it is not connected (Reason says why) or closed. It does not touch the token (Ping
// does); the monitor keeps this current.
func (t *Token) Healthy() error {
	if t.closed.Load() {
		return classErr("health", ErrUnavailable, "token closed")
	}
	t.gate.mu.Lock()
	defer t.gate.mu.Unlock()
	if t.gate.down != nil {
		return t.gate.refusal("health")
	}
	return nil
}

// Reconnects returns how many times the Token has reconnected since Open.
func (t *Token) Reconnects() uint64 {
	t.gate.mu.Lock()
	defer t.gate.mu.Unlock()
	return t.epoch
}
