package loadgen

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLoop: the window opens after the warm-up and every worker's first
// operation, counts only successes that finished inside it, with their
// latencies; failures count anywhere; After runs after every operation,
// outside its timing; no operation starts once the window has closed.
func TestLoop(t *testing.T) {
	errOdd := errors.New("odd")
	tests := []struct {
		name          string
		warmup        time.Duration
		maxWarm       time.Duration
		failOdd       bool // worker 1's operations fail
		after         time.Duration
		wantAllInside bool // no warm-up: every success finishing before the close counts
	}{
		{name: "warm-up", warmup: 20 * time.Millisecond, maxWarm: time.Second},
		{name: "failures", warmup: 5 * time.Millisecond, maxWarm: time.Second, failOdd: true},
		{name: "after is not timed", maxWarm: time.Second, after: 50 * time.Millisecond},
		{name: "no warm-up", wantAllInside: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				mu              sync.Mutex
				marks           []bool
				closed          atomic.Bool
				startedLate     atomic.Int64
				ok, failed, aft atomic.Int64
			)
			l := Loop{
				Workers: 3, Warmup: tt.warmup, Duration: 60 * time.Millisecond, MaxWarm: tt.maxWarm,
				Op: func(_ context.Context, w, _ int) error {
					if closed.Load() {
						startedLate.Add(1)
					}
					time.Sleep(2 * time.Millisecond)
					if tt.failOdd && w == 1 {
						failed.Add(1)
						return errOdd
					}
					ok.Add(1)
					return nil
				},
				Mark: func(start bool) {
					mu.Lock()
					marks = append(marks, start)
					mu.Unlock()
					if !start {
						closed.Store(true)
					}
				},
			}
			if tt.after > 0 {
				l.After = func(context.Context, int) { aft.Add(1); time.Sleep(tt.after) }
			}
			w := l.Run(context.Background())
			if len(marks) != 2 || !marks[0] || marks[1] {
				t.Errorf("marks %v, want [true false]", marks)
			}
			if w.Ops == 0 || len(w.Latencies) != w.Ops || !w.End.After(w.Start) {
				t.Fatalf("window %v→%v: %d ops, %d latencies", w.Start, w.End, w.Ops, len(w.Latencies))
			}
			if n := startedLate.Load(); n != 0 {
				t.Errorf("%d operations started after the window closed", n)
			}
			if got := int64(w.Ops); got > ok.Load() || tt.wantAllInside && got < ok.Load()-3 {
				t.Errorf("%d ops in the window of %d successes", got, ok.Load())
			}
			if int64(w.Errors) != failed.Load() || (failed.Load() > 0) != errors.Is(w.FirstErr, errOdd) {
				t.Errorf("errors %d (first %v), want %d", w.Errors, w.FirstErr, failed.Load())
			}
			if tt.after > 0 && aft.Load() != ok.Load() {
				t.Errorf("After ran %d times for %d operations", aft.Load(), ok.Load())
			}
			for _, d := range w.Latencies {
				if tt.after > 0 && d >= tt.after {
					t.Errorf("latency %v includes After's %v", d, tt.after)
					break
				}
			}
		})
	}
}
