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
	r := &loopRun{l: l}
	if l.Warmup <= 0 && l.MaxWarm <= 0 {
		r.open()
	}
	var wg sync.WaitGroup
	r.firstDone.Add(l.Workers)
	for i := range l.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.work(ctx, i)
		}()
	}
	if r.startNS.Load() == 0 {
		l.warm(ctx, &r.firstDone)
		r.open()
	}
	select {
	case <-time.After(l.Duration):
	case <-ctx.Done():
	}
	// A window too short for the token's pace would count nothing: keep it
	// open until Workers operations finished in it (bounded by MaxWarm).
	for limit := time.Now().Add(l.MaxWarm); r.inWindow.Load() < int64(l.Workers) && time.Now().Before(limit) && ctx.Err() == nil; {
		time.Sleep(5 * time.Millisecond)
	}
	r.close()
	wg.Wait()
	return r.w
}

// loopRun is the state one Run shares with its workers.
type loopRun struct {
	l              Loop
	startNS, endNS atomic.Int64 // unix nanos; 0 = not yet
	stop           atomic.Bool
	firstDone      sync.WaitGroup // a worker is done with it after its first operation
	inWindow       atomic.Int64

	// w's Start and End are written by Run alone; mu guards the rest while
	// workers run.
	mu sync.Mutex
	w  Window
}

// open opens the measurement window.
func (r *loopRun) open() {
	if r.l.Mark != nil {
		r.l.Mark(true)
	}
	r.w.Start = time.Now()
	r.startNS.Store(r.w.Start.UnixNano())
}

// close closes the window and tells the workers to start nothing more.
func (r *loopRun) close() {
	r.w.End = time.Now()
	r.endNS.Store(r.w.End.UnixNano())
	if r.l.Mark != nil {
		r.l.Mark(false)
	}
	r.stop.Store(true)
}

// work is worker i: operations back to back until the window has closed or
// ctx is done. Its first operation, or its stopping before one, counts it
// in firstDone.
func (r *loopRun) work(ctx context.Context, i int) {
	first := true
	for seq := 0; !r.stop.Load() && ctx.Err() == nil; seq++ {
		t0 := time.Now()
		err := r.l.Op(ctx, i, seq)
		r.record(err, t0, time.Now())
		if r.l.After != nil {
			r.l.After(ctx, i)
		}
		if first {
			first = false
			r.firstDone.Done()
		}
	}
	if first {
		r.firstDone.Done()
	}
}

// record counts an operation that ran from t0 to t1: a failure wherever it
// ended, a success only when it ended inside the window.
func (r *loopRun) record(err error, t0, t1 time.Time) {
	s, e := r.startNS.Load(), r.endNS.Load()
	in := s != 0 && t1.UnixNano() >= s && (e == 0 || t1.UnixNano() <= e)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil:
		r.w.Errors++
		if r.w.FirstErr == nil {
			r.w.FirstErr = err
		}
	case in:
		r.inWindow.Add(1)
		r.w.Ops++
		r.w.Latencies = append(r.w.Latencies, t1.Sub(t0))
	}
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
