package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// window is what a closed loop observed between its start and end marks.
type window struct {
	start, end time.Time
	ops        int
	errors     int
	firstErr   error
	latencies  []time.Duration
}

// loopSpec describes one closed-loop run: c workers each calling op back to
// back. The measurement window opens once warmup has passed and every worker
// has finished at least one operation (so a slow key type at high
// concurrency is in steady state), lasts duration, and is followed by a drain
// in which workers finish the operation they are in. The window stays open
// past duration until c operations completed in it. mark is called at the
// window's start and end (CPU and RSS snapshots).
type loopSpec struct {
	c        int
	warmup   time.Duration
	duration time.Duration
	maxWarm  time.Duration // give up waiting for every worker's first op after this
	op       func(ctx context.Context, worker, seq int) error
	mark     func(start bool)
}

func runLoop(ctx context.Context, ls loopSpec) window {
	var (
		startNS, endNS atomic.Int64 // unix nanos; 0 = not yet
		stop           atomic.Bool
		firstDone      sync.WaitGroup
		inWindow       atomic.Int64
		mu             sync.Mutex
		w              window
		wg             sync.WaitGroup
	)
	firstDone.Add(ls.c)
	for i := range ls.c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := true
			for seq := 0; !stop.Load() && ctx.Err() == nil; seq++ {
				t0 := time.Now()
				err := ls.op(ctx, i, seq)
				t1 := time.Now()
				s, e := startNS.Load(), endNS.Load()
				in := s != 0 && t1.UnixNano() >= s && (e == 0 || t1.UnixNano() <= e)
				mu.Lock()
				if err != nil {
					w.errors++
					if w.firstErr == nil {
						w.firstErr = err
					}
				} else if in {
					inWindow.Add(1)
					w.ops++
					w.latencies = append(w.latencies, t1.Sub(t0))
				}
				mu.Unlock()
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

	// Open the window after warmup and every worker's first operation.
	allFirst := make(chan struct{})
	go func() { firstDone.Wait(); close(allFirst) }()
	warm := time.NewTimer(ls.warmup)
	select {
	case <-warm.C:
	case <-ctx.Done():
	}
	maxWarm := time.NewTimer(ls.maxWarm)
	select {
	case <-allFirst:
	case <-maxWarm.C:
	case <-ctx.Done():
	}
	maxWarm.Stop()
	if ls.mark != nil {
		ls.mark(true)
	}
	w.start = time.Now()
	startNS.Store(w.start.UnixNano())
	select {
	case <-time.After(ls.duration):
	case <-ctx.Done():
	}
	// A window too short for the token's pace would count nothing: keep it
	// open until c operations finished in it (bounded by maxWarm).
	for cap := time.Now().Add(ls.maxWarm); inWindow.Load() < int64(ls.c) && time.Now().Before(cap) && ctx.Err() == nil; {
		time.Sleep(5 * time.Millisecond)
	}
	w.end = time.Now()
	endNS.Store(w.end.UnixNano())
	if ls.mark != nil {
		ls.mark(false)
	}
	stop.Store(true)
	wg.Wait()
	return w
}

func (w window) measure() Measure {
	m := Measure{Ops: w.ops, Errors: w.errors, Seconds: w.end.Sub(w.start).Seconds()}
	if w.firstErr != nil {
		m.FirstError = w.firstErr.Error()
	}
	if m.Seconds > 0 {
		m.PerSecond = float64(w.ops) / m.Seconds
	}
	m.latencies = w.latencies
	fillLatency(&m, append([]time.Duration{}, w.latencies...))
	return m
}
