package loadgen

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Loop is a closed loop: Workers goroutines each call Op back to back, so
// that Workers operations are always in flight. The measurement window
// opens once Warmup has passed and every worker has finished at least one
// operation (so a slow key type at high concurrency is in steady state;
// MaxWarm bounds that wait), lasts Duration, and stays open past it until
// Workers operations finished in it (also bounded by MaxWarm). A loop with
// neither Warmup nor MaxWarm opens its window before the first operation.
// After the window no operation starts; those in flight finish (the drain)
// and count as errors if they fail, but not as operations of the window.
type Loop struct {
	Workers  int
	Warmup   time.Duration
	Duration time.Duration
	MaxWarm  time.Duration
	// Op is worker's seq-th operation; an error counts against the run.
	Op func(ctx context.Context, worker, seq int) error
	// After, when set, runs after each of worker's operations, outside its
	// timing: work the caller wants done but not measured.
	After func(ctx context.Context, worker int)
	// Mark, when set, is called as the window opens and as it closes
	// (CPU and memory snapshots).
	Mark func(start bool)
}

// Window is what a closed loop observed.
type Window struct {
	Start, End time.Time
	Ops        int             // operations that succeeded inside the window
	Errors     int             // operations that failed, anywhere in the run
	FirstErr   error           // the first of them
	Latencies  []time.Duration // of the operations counted in Ops
}

// Run runs the loop until its window has closed and every worker stopped,
// or ctx is done.
func (l Loop) Run(ctx context.Context) Window {
	var (
		startNS, endNS atomic.Int64 // unix nanos; 0 = not yet
		stop           atomic.Bool
		firstDone      sync.WaitGroup
		inWindow       atomic.Int64
		mu             sync.Mutex
		w              Window
		wg             sync.WaitGroup
	)
	open := func() {
		if l.Mark != nil {
			l.Mark(true)
		}
		w.Start = time.Now()
		startNS.Store(w.Start.UnixNano())
	}
	if l.Warmup <= 0 && l.MaxWarm <= 0 {
		open()
	}
	record := func(err error, t0, t1 time.Time) {
		s, e := startNS.Load(), endNS.Load()
		in := s != 0 && t1.UnixNano() >= s && (e == 0 || t1.UnixNano() <= e)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			w.Errors++
			if w.FirstErr == nil {
				w.FirstErr = err
			}
		case in:
			inWindow.Add(1)
			w.Ops++
			w.Latencies = append(w.Latencies, t1.Sub(t0))
		}
	}
	firstDone.Add(l.Workers)
	for i := range l.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := true
			for seq := 0; !stop.Load() && ctx.Err() == nil; seq++ {
				t0 := time.Now()
				err := l.Op(ctx, i, seq)
				record(err, t0, time.Now())
				if l.After != nil {
					l.After(ctx, i)
				}
				if first {
					first = false
					firstDone.Done()
				}
			}
			if first {
				firstDone.Done()
			}
		}()
	}
	if startNS.Load() == 0 {
		l.warm(ctx, &firstDone)
		open()
	}
	select {
	case <-time.After(l.Duration):
	case <-ctx.Done():
	}
	// A window too short for the token's pace would count nothing: keep it
	// open until Workers operations finished in it (bounded by MaxWarm).
	for limit := time.Now().Add(l.MaxWarm); inWindow.Load() < int64(l.Workers) && time.Now().Before(limit) && ctx.Err() == nil; {
		time.Sleep(5 * time.Millisecond)
	}
	w.End = time.Now()
	endNS.Store(w.End.UnixNano())
	if l.Mark != nil {
		l.Mark(false)
	}
	stop.Store(true)
	wg.Wait()
	return w
}

// warm waits for Warmup, then for every worker's first operation (at most
// MaxWarm).
func (l Loop) warm(ctx context.Context, firstDone *sync.WaitGroup) {
	allFirst := make(chan struct{})
	go func() { firstDone.Wait(); close(allFirst) }()
	select {
	case <-time.After(l.Warmup):
	case <-ctx.Done():
	}
	maxWarm := time.NewTimer(l.MaxWarm)
	defer maxWarm.Stop()
	select {
	case <-allFirst:
	case <-maxWarm.C:
	case <-ctx.Done():
	}
}
