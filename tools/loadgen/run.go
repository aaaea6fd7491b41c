package loadgen

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one load run.
type Config struct {
	Client   Client
	Clients  int           // concurrent clients, each with one request in flight
	Duration time.Duration // no new request starts after this
	Mix      Mix
	Seed     uint64
	// Pid, when positive, is the csrd process whose memory is sampled.
	Pid int
	// OnAnswer, when set, sees every Generate answer (from many goroutines).
	OnAnswer func(Answer)
	// Churn deletes every accepted key straight away (DELETE Pending/{id}),
	// so the token's object count stays flat: memory growth then cannot be
	// the token's object cache, and a steady RSS shows csrd does not leak.
	Churn bool
}

// Result is what a run measured.
type Result struct {
	Clients  int
	Duration time.Duration // wall time, including the last requests' tails
	Requests int
	Status   map[int]int    // HTTP status → count (0: transport failure)
	Errors   map[string]int // transport failures and malformed answers by text
	Accepted []int64        // record ids of every 200, sorted
	Deleted  int            // accepted keys deleted again (Churn)
	// Unexpected counts answers that are neither a well-formed 200 nor a
	// well-formed 503 (csrd's backpressure answer, with Retry-After), and
	// transport failures.
	Unexpected int
	Latency    Latencies

	// Resident memory of Pid in bytes: before the first request, after the
	// last one, and the highest sample taken (once a second) in between.
	RSSStart, RSSEnd, RSSMax int64
	// RSSSamples are the once-a-second samples, for seeing a trend.
	RSSSamples []int64
	// HeapStart and HeapEnd are csrd's Go heap in use (from its /metrics)
	// before the first and after the last request; 0 when not readable.
	HeapStart, HeapEnd int64
}

// Run starts cfg.Clients clients that send Generate requests back to back
// until cfg.Duration has passed, then waits for the requests in flight (they
// are not cancelled: an abandoned request would read as an error, and csrd
// finishes a started generate anyway). ctx cancels everything early. The
// latency percentiles are those of the Generate requests that finished
// within cfg.Duration; every request counts in the totals.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Clients < 1 || cfg.Duration <= 0 || cfg.Mix.total == 0 {
		return nil, errors.New("loadgen: need at least one client, a positive duration and a mix")
	}
	r := &run{cfg: cfg, res: &Result{Clients: cfg.Clients, Status: map[int]int{}, Errors: map[string]int{}},
		rands: make([]*rand.Rand, cfg.Clients), ids: make([]int64, cfg.Clients)}
	for c := range r.rands {
		r.rands[c] = rand.New(rand.NewPCG(cfg.Seed, uint64(c)))
	}
	loop := Loop{Workers: cfg.Clients, Duration: cfg.Duration, Op: r.generate}
	if cfg.Churn {
		loop.After = r.churn
	}
	stopWatch := r.watchMemory(ctx)
	start := time.Now()
	win := loop.Run(ctx)
	r.res.Duration = time.Since(start)
	stopWatch()
	slices.Sort(r.res.Accepted)
	r.res.Latency = Percentiles(win.Latencies)
	return r.res, ctx.Err()
}

// run is one load run's state, shared by its clients.
type run struct {
	cfg   Config
	seq   atomic.Int64 // numbers the requests, for unique subjects
	rands []*rand.Rand // per client: its key kinds
	ids   []int64      // per client: the record its last Generate made, 0 if none

	mu  sync.Mutex // guards res
	res *Result
}

// generate is client c's next Generate, counted by its answer. Every
// answer is an operation of the loop (it times them all): whether it was
// one the run expects is the status histogram's business.
func (r *run) generate(ctx context.Context, c, _ int) error {
	a := r.cfg.Client.Generate(ctx, r.cfg.Mix.Body(r.rands[c], r.seq.Add(1)))
	if r.cfg.OnAnswer != nil {
		r.cfg.OnAnswer(a)
	}
	ok := a.Status == http.StatusOK && a.Err == nil
	r.ids[c] = 0
	if ok {
		r.ids[c] = a.ID
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Requests++
	r.res.Status[a.Status]++
	if a.Err != nil {
		r.res.Errors[a.Err.Error()]++
	}
	if a.Err != nil || a.Status != http.StatusOK && a.Status != http.StatusServiceUnavailable {
		r.res.Unexpected++
	}
	if ok {
		r.res.Accepted = append(r.res.Accepted, a.ID)
	}
	return nil
}

// churn deletes the key client c's last Generate made, outside its timing.
func (r *run) churn(ctx context.Context, c int) {
	if r.ids[c] == 0 {
		return
	}
	d := r.cfg.Client.Delete(ctx, r.ids[c])
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Requests++
	r.res.Status[d.Status]++
	switch {
	case d.Err != nil:
		r.res.Errors[d.Err.Error()]++
		r.res.Unexpected++
	case d.Status == http.StatusNoContent:
		r.res.Deleted++
	case d.Status != http.StatusServiceUnavailable:
		r.res.Unexpected++
	}
}

// watchMemory reads cfg.Pid's RSS and Go heap now, samples its RSS once a
// second until the returned stop is called, and stop reads both again.
// Without a Pid it does nothing.
func (r *run) watchMemory(ctx context.Context) (stop func()) {
	pid, res := r.cfg.Pid, r.res
	if pid <= 0 {
		return func() {}
	}
	res.HeapStart, _ = r.cfg.Client.GoHeap(ctx)
	res.RSSStart, _ = RSS(pid)
	res.RSSMax = res.RSSStart
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if v, err := RSS(pid); err == nil {
					res.RSSMax = max(res.RSSMax, v)
					res.RSSSamples = append(res.RSSSamples, v)
				}
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
		if v, err := RSS(pid); err == nil {
			res.RSSEnd = v
			res.RSSMax = max(res.RSSMax, v)
		}
		res.HeapEnd, _ = r.cfg.Client.GoHeap(context.WithoutCancel(ctx))
	}
}
