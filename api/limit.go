package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
)

// limiter bounds key generations in flight. A generation holds a PKCS#11
// session for seconds (RSA) and cannot be cancelled, so an unbounded queue
// only turns a burst into timeouts for everyone; instead a request waits at
// most wait for a slot and is then answered 503 with Retry-After, before any
// record or key exists.
//
// A slot is taken only for a request whose body has been read, bound and
// authorised (see generate): a caller cannot hold one by sending its body
// slowly or by asking for a target its grant refuses. perIdentity, when
// set, caps the generations one identity has in flight or waiting for a
// slot, so that one caller cannot take every slot either; over the cap it is
// answered 429 at once.
type limiter struct {
	slots   chan struct{} // nil: no global bound
	wait    time.Duration
	waiting atomic.Int64

	perIdentity int
	mu          sync.Mutex
	held        map[string]int // generations in flight or waiting, by identity
}

func newLimiter(n, perIdentity int, wait time.Duration) *limiter {
	if n <= 0 && perIdentity <= 0 {
		return nil
	}
	l := &limiter{wait: wait, perIdentity: perIdentity, held: map[string]int{}}
	if n > 0 {
		l.slots = make(chan struct{}, n)
	}
	return l
}

// InFlight and Waiting are for metrics and tests.
func (l *limiter) InFlight() int  { return len(l.slots) }
func (l *limiter) Waiting() int64 { return l.waiting.Load() }

// identityRetryAfter is what a caller over its own cap is told: its own
// generations in flight usually end within a second (ECDSA, RSA-2048).
const identityRetryAfter = 1

// acquire takes a generation slot for identity (names compare without
// case, as the auth file's do), waiting at most l.wait; release gives it
// back. A nil limiter lets everything through.
func (l *limiter) acquire(c echo.Context, identity string) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	key := strings.ToLower(identity)
	if !l.reserve(key) {
		c.Response().Header().Set("Retry-After", strconv.Itoa(identityRetryAfter))
		return nil, &Error{Status: http.StatusTooManyRequests, Code: CodeIdentityBusy,
			Msg: fmt.Sprintf("%s already has %d key generations in progress; try again when one has finished", identity, l.perIdentity)}
	}
	if err := l.take(c.Request().Context()); err != nil {
		l.unreserve(key)
		return nil, err
	}
	return func() {
		if l.slots != nil {
			<-l.slots
		}
		l.unreserve(key)
	}, nil
}

// reserve counts one more generation for key unless it is at its cap.
func (l *limiter) reserve(key string) bool {
	if l.perIdentity <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[key] >= l.perIdentity {
		return false
	}
	l.held[key]++
	return true
}

func (l *limiter) unreserve(key string) {
	if l.perIdentity <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[key]--; l.held[key] <= 0 {
		delete(l.held, key)
	}
}

// take waits at most l.wait for a global slot; without a global bound
// there is none to take.
func (l *limiter) take(ctx context.Context) error {
	if l.slots == nil {
		return nil
	}
	select {
	case l.slots <- struct{}{}:
		return nil
	default:
	}
	l.waiting.Add(1)
	defer l.waiting.Add(-1)
	timer := time.NewTimer(l.wait)
	defer timer.Stop()
	select {
	case l.slots <- struct{}{}:
		return nil
	case <-timer.C:
		return l.busy()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *limiter) busy() error {
	return &Error{Status: http.StatusServiceUnavailable, Code: CodeBusy,
		Msg: fmt.Sprintf("%d key generations are already in progress; try again later", cap(l.slots))}
}
