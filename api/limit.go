package api

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
)

// limiter bounds key generations in flight. A generation holds a PKCS#11
// session for seconds (RSA) and cannot be cancelled, so an unbounded queue
// only turns a burst into timeouts for everyone; instead a request waits at
// most wait for a slot and is then answered 503 with Retry-After, before any
// record or key exists.
type limiter struct {
	slots   chan struct{}
	wait    time.Duration
	waiting atomic.Int64
}

func newLimiter(n int, wait time.Duration) *limiter {
	if n <= 0 {
		return nil
	}
	return &limiter{slots: make(chan struct{}, n), wait: wait}
}

// InFlight and Waiting are for metrics and tests.
func (l *limiter) InFlight() int  { return len(l.slots) }
func (l *limiter) Waiting() int64 { return l.waiting.Load() }

// middleware holds a slot for the duration of the handler. A nil limiter
// lets everything through.
func (l *limiter) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	if l == nil {
		return next
	}
	return func(c echo.Context) error {
		select {
		case l.slots <- struct{}{}:
		default:
			l.waiting.Add(1)
			timer := time.NewTimer(l.wait)
			select {
			case l.slots <- struct{}{}:
				timer.Stop()
				l.waiting.Add(-1)
			case <-timer.C:
				l.waiting.Add(-1)
				return l.busy()
			case <-c.Request().Context().Done():
				timer.Stop()
				l.waiting.Add(-1)
				return c.Request().Context().Err()
			}
		}
		defer func() { <-l.slots }()
		return next(c)
	}
}

func (l *limiter) busy() error {
	return &Error{Status: http.StatusServiceUnavailable, Code: CodeBusy,
		Msg: fmt.Sprintf("%d key generations are already in progress; try again later", cap(l.slots))}
}
