package health

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Check is one named probe. Func must honour ctx's deadline as far as it can
// (PKCS#11 calls cannot be cancelled; the Checker stops waiting regardless).
type Check struct {
	Name string
	Func func(ctx context.Context) error
}

// Report is the outcome of one run of every check.
type Report struct {
	Ready  bool
	At     time.Time
	Checks map[string]bool  // name → passed
	Errors map[string]error // name → why it failed; for the log only
	// Answered is false when a check gave no answer before the deadline:
	// something is stuck, which a failing answer does not show.
	Answered bool
}

// Invalidate drops the cached report, so the next Check runs the checks:
// for a caller that knows the answer has just changed.
func (c *Checker) Invalidate() {
	c.mu.Lock()
	c.last = nil
	c.mu.Unlock()
}

// Checker runs a fixed set of checks.
type Checker struct {
	checks  []Check
	timeout time.Duration
	maxAge  time.Duration
	now     func() time.Time

	mu   sync.Mutex
	last *Report
}

// New returns a Checker that gives each run timeout and reuses a report for
// maxAge (0: always run).
func New(timeout, maxAge time.Duration, checks ...Check) *Checker {
	return &Checker{checks: checks, timeout: timeout, maxAge: maxAge, now: time.Now}
}

// Check returns a report no older than maxAge, running the checks (all at
// once) if needed. Concurrent callers share one run.
func (c *Checker) Check(ctx context.Context) Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last != nil && c.maxAge > 0 && c.now().Sub(c.last.At) < c.maxAge {
		return *c.last
	}
	r := c.run(ctx)
	c.last = &r
	return r
}

func (c *Checker) run(ctx context.Context) Report {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	type result struct {
		name string
		err  error
	}
	// Buffered: a check that outlives the deadline finishes into the void.
	res := make(chan result, len(c.checks))
	for _, ch := range c.checks {
		go func() { res <- result{ch.Name, ch.Func(ctx)} }()
	}
	r := Report{Ready: true, At: c.now(), Checks: map[string]bool{}, Errors: map[string]error{}}
	answers := 0
	for _, ch := range c.checks {
		r.Checks[ch.Name] = false
		r.Errors[ch.Name] = fmt.Errorf("health: %s: no answer within %v", ch.Name, c.timeout)
	}
	for range c.checks {
		select {
		case x := <-res:
			answers++
			r.Checks[x.name] = x.err == nil
			if x.err == nil {
				delete(r.Errors, x.name)
			} else {
				r.Errors[x.name] = x.err
			}
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	r.Answered = answers == len(c.checks)
	for _, ok := range r.Checks {
		r.Ready = r.Ready && ok
	}
	return r
}
