package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrBusy: every password verification slot is taken and the queue for
// them is full; the attempt is refused at once, before any verification.
var ErrBusy = errors.New("auth: too many password verifications waiting")

// Defaults for Options.
const (
	// DefaultVerifySlots: slow hash verifications running at once. Each
	// argon2id run at the default cost holds 64 MiB and a core, so a burst
	// of Basic requests cannot allocate memory many times over.
	DefaultVerifySlots = 2
	// DefaultVerifyQueue: verifications that may wait for a slot. With
	// verifications of ~0.1-0.3 s, a full queue is a few seconds of work;
	// beyond it waiting only turns a flood into timeouts for everyone.
	DefaultVerifyQueue = 16
	// DefaultVerifyPerSource: verifications one source may have running or
	// waiting. One: a source cannot hold both slots, so a flood from one
	// address leaves a slot for everyone else.
	DefaultVerifyPerSource = 1
)

// verifier admits slow password verifications: a fixed number run at once,
// a bounded number wait (in arrival order), and each source may have only
// a few running or waiting. What does not fit is refused at once rather
// than queued without bound.
type verifier struct {
	slots     chan struct{}
	maxQueue  int
	perSource int

	mu       sync.Mutex
	waiting  int
	bySource map[string]int
}

func newVerifier(slots, queue, perSource int) *verifier {
	return &verifier{
		slots:     make(chan struct{}, max(slots, 1)),
		maxQueue:  max(queue, 0),
		perSource: max(perSource, 1),
		bySource:  map[string]int{},
	}
}

// acquire waits for a verification slot for src. It refuses at once with
// a *ThrottledError when src already has perSource verifications running or
// waiting, and with ErrBusy when the queue is full. The returned release
// must be called when the verification is done.
func (v *verifier) acquire(ctx context.Context, src string) (release func(), err error) {
	v.mu.Lock()
	if v.bySource[src] >= v.perSource {
		v.mu.Unlock()
		return nil, &ThrottledError{RetryAfter: inFlightRetry}
	}
	select {
	case v.slots <- struct{}{}:
		v.bySource[src]++
		v.mu.Unlock()
		return func() { v.done(src) }, nil
	default:
	}
	if v.waiting >= v.maxQueue {
		v.mu.Unlock()
		return nil, ErrBusy
	}
	v.waiting++
	v.bySource[src]++
	v.mu.Unlock()

	select {
	case v.slots <- struct{}{}:
		v.mu.Lock()
		v.waiting--
		v.mu.Unlock()
		return func() { v.done(src) }, nil
	case <-ctx.Done():
		v.mu.Lock()
		v.waiting--
		v.mu.Unlock()
		v.leave(src)
		return nil, fmt.Errorf("auth: %w", ctx.Err())
	}
}

// done gives back the slot and src's share.
func (v *verifier) done(src string) {
	<-v.slots
	v.leave(src)
}

func (v *verifier) leave(src string) {
	v.mu.Lock()
	if v.bySource[src]--; v.bySource[src] <= 0 {
		delete(v.bySource, src)
	}
	v.mu.Unlock()
}

// load reports the verifications running and waiting (tests, metrics).
func (v *verifier) load() (running, waiting int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.slots), v.waiting
}
