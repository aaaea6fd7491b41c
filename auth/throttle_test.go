package auth

import (
	"errors"
	"testing"
	"time"
)

// throttleAt returns a throttle of limit failures with a clock the test
// moves.
func throttleAt(limit int) (*Throttle, *time.Time) {
	now := time.Unix(1000, 0)
	th := NewThrottle(limit, time.Minute)
	th.SetClock(func() time.Time { return now })
	return th, &now
}

// fail makes one failed attempt and reports whether it was let in at all.
func fail(th *Throttle, src, id string) bool {
	a, err := th.Begin(src, id)
	if err != nil {
		return false
	}
	a.Fail()
	return true
}

func lockedFor(t *testing.T, th *Throttle, src string) time.Duration {
	t.Helper()
	d, _ := th.Locked(src)
	return d
}

func TestThrottleLockoutDoubles(t *testing.T) {
	th, now := throttleAt(2)
	fail(th, "a", "user:bob")
	if _, b := th.Locked("a"); b {
		t.Fatal("locked after one failure")
	}
	fail(th, "a", "user:carol")
	if d := lockedFor(t, th, "a"); d != time.Minute {
		t.Fatalf("after two failures: locked for %v, want 1m", d)
	}
	var te *ThrottledError
	if _, err := th.Begin("a", "user:dave"); !errors.As(err, &te) || !te.Locked || te.RetryAfter != time.Minute || !errors.Is(err, ErrThrottled) {
		t.Fatalf("Begin while locked: %v", err)
	}
	if _, b := th.Locked("b"); b {
		t.Fatal("another source is locked")
	}
	*now = now.Add(time.Minute)
	fail(th, "a", "user:bob")
	if d := lockedFor(t, th, "a"); d != 2*time.Minute {
		t.Fatalf("third failure: lockout %v, want 2m", d)
	}
	*now = now.Add(time.Hour) // quiet long enough: forgotten
	fail(th, "a", "user:bob")
	if _, b := th.Locked("a"); b {
		t.Fatal("failure count not reset after a quiet hour")
	}
	// The lockout itself is not quiet time: the doubling goes on past
	// the reset interval, up to an hour.
	th, now = throttleAt(1)
	for _, want := range []time.Duration{1, 2, 4, 8, 16, 32, 60, 60} {
		if !fail(th, "c", "user:bob") {
			t.Fatal("refused after the lockout ran out")
		}
		d := lockedFor(t, th, "c")
		if d != want*time.Minute {
			t.Fatalf("lockout %v, want %v", d, want*time.Minute)
		}
		*now = now.Add(d)
	}
	if a, err := NewThrottle(0, 0).Begin("a", "x"); err != nil || a == nil {
		t.Fatalf("limit 0 must disable throttling: %v", err)
	}
}

// A success forgives only the failures of the identity that succeeded,
// from that source: a valid low-privilege credential does not buy fresh
// guesses at another user.
func TestThrottleSuccessForgivesOnlyItsIdentity(t *testing.T) {
	th, _ := throttleAt(5)
	for round := 0; ; round++ {
		for range 4 {
			if !fail(th, "a", "user:bob") {
				if round == 0 {
					t.Fatal("locked before the limit")
				}
				return // locked within the second round: good
			}
		}
		th.Succeed("a", "user:alice")
		if round > 0 {
			t.Fatalf("after %d rounds of 4 guesses and a success, still not locked", round+1)
		}
	}
}

func TestThrottleSuccessForgivesItsOwnFailures(t *testing.T) {
	th, _ := throttleAt(3)
	fail(th, "a", "user:alice")
	fail(th, "a", "user:alice")
	a, err := th.Begin("a", "user:alice")
	if err != nil {
		t.Fatal(err)
	}
	a.Succeed()
	fail(th, "a", "user:alice")
	fail(th, "a", "user:alice")
	if _, b := th.Locked("a"); b {
		t.Fatal("alice's own failures were not forgiven by her success")
	}
}

// Guesses at one identity from many sources: once the identity has had
// Limit failures, a source guessing at it is locked out at its first
// failure; a source that never failed is not, so knowing the name does not
// lock its owner out.
func TestThrottleIdentityUnderAttack(t *testing.T) {
	th, _ := throttleAt(3)
	for _, src := range []string{"s1", "s2", "s3"} {
		fail(th, src, "user:bob")
		if _, b := th.Locked(src); b {
			t.Fatalf("%s locked after its first failure before bob was under attack", src)
		}
	}
	fail(th, "s4", "user:bob")
	if d := lockedFor(t, th, "s4"); d != time.Minute {
		t.Fatalf("s4 guessed at bob under attack: locked for %v, want 1m", d)
	}
	owner, err := th.Begin("owner", "user:bob")
	if err != nil {
		t.Fatalf("a source that never failed is refused: %v", err)
	}
	// Under attack, one attempt at a time per source.
	if _, err := th.Begin("owner", "user:bob"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("second parallel attempt at bob under attack: %v", err)
	}
	owner.Succeed()
	if _, b := th.Locked("s4"); !b {
		t.Fatal("the owner's success unlocked an attacker")
	}
}

// Attempts in flight count: of any number begun at once, at most the
// remaining allowance is let through, and their failures then lock.
func TestThrottleInFlightAttemptsCount(t *testing.T) {
	th, _ := throttleAt(5)
	fail(th, "a", "user:x")
	var open []*Attempt
	for range 40 {
		a, err := th.Begin("a", "user:bob")
		if err == nil {
			open = append(open, a)
			continue
		}
		var te *ThrottledError
		if !errors.As(err, &te) || te.Locked || te.RetryAfter != inFlightRetry {
			t.Fatalf("refused with %v, want a not-locked ThrottledError", err)
		}
	}
	if len(open) != 4 {
		t.Fatalf("%d attempts let through at once, want 4 (limit 5, one failure)", len(open))
	}
	open[0].Release() // no verdict: the allowance comes back, nothing counted
	open[0].Fail()    // ended already: no effect
	if a, err := th.Begin("a", "user:bob"); err != nil {
		t.Fatalf("after a release: %v", err)
	} else {
		open[0] = a
	}
	for _, a := range open {
		a.Fail()
	}
	if d := lockedFor(t, th, "a"); d != time.Minute {
		t.Fatalf("after 5 failures: locked for %v, want 1m", d)
	}
	// After the lockout runs out, one probe at a time.
	th.now = func() time.Time { return time.Unix(1000, 0).Add(61 * time.Second) }
	if _, err := th.Begin("a", "user:bob"); err != nil {
		t.Fatalf("probe after lockout: %v", err)
	}
	if _, err := th.Begin("a", "user:bob"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("second probe in parallel: %v", err)
	}
}
