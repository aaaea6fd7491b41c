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
// finishes a started generate anyway). ctx cancels everything early.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Clients < 1 || cfg.Duration <= 0 || cfg.Mix.total == 0 {
		return nil, errors.New("loadgen: need at least one client, a positive duration and a mix")
	}
	res := &Result{Clients: cfg.Clients, Status: map[int]int{}, Errors: map[string]int{}}
	var (
		mu        sync.Mutex
		latencies []time.Duration
		seq       atomic.Int64
	)
	stopRSS := make(chan struct{})
	rssDone := make(chan struct{})
	if cfg.Pid > 0 {
		res.HeapStart, _ = cfg.Client.GoHeap(ctx)
		res.RSSStart, _ = RSS(cfg.Pid)
		res.RSSMax = res.RSSStart
		go func() {
			defer close(rssDone)
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-stopRSS:
					return
				case <-tick.C:
					if v, err := RSS(cfg.Pid); err == nil {
						mu.Lock()
						res.RSSMax = max(res.RSSMax, v)
						res.RSSSamples = append(res.RSSSamples, v)
						mu.Unlock()
					}
				}
			}
		}()
	} else {
		close(rssDone)
	}

	start := time.Now()
	deadline := start.Add(cfg.Duration)
	var wg sync.WaitGroup
	for c := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(cfg.Seed, uint64(c)))
			for ctx.Err() == nil && time.Now().Before(deadline) {
				n := seq.Add(1)
				t0 := time.Now()
				a := cfg.Client.Generate(ctx, cfg.Mix.Body(r, n))
				lat := time.Since(t0)
				if cfg.OnAnswer != nil {
					cfg.OnAnswer(a)
				}
				mu.Lock()
				res.Requests++
				res.Status[a.Status]++
				if a.Err != nil {
					res.Errors[a.Err.Error()]++
				}
				if a.Err != nil || a.Status != http.StatusOK && a.Status != http.StatusServiceUnavailable {
					res.Unexpected++
				}
				if a.Status == http.StatusOK && a.Err == nil {
					res.Accepted = append(res.Accepted, a.ID)
				}
				latencies = append(latencies, lat)
				mu.Unlock()
				if cfg.Churn && a.Status == http.StatusOK && a.Err == nil {
					d := cfg.Client.Delete(ctx, a.ID)
					mu.Lock()
					res.Requests++
					res.Status[d.Status]++
					switch {
					case d.Err != nil:
						res.Errors[d.Err.Error()]++
						res.Unexpected++
					case d.Status == http.StatusNoContent:
						res.Deleted++
					case d.Status != http.StatusServiceUnavailable:
						res.Unexpected++
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	res.Duration = time.Since(start)
	close(stopRSS)
	<-rssDone
	if cfg.Pid > 0 {
		if v, err := RSS(cfg.Pid); err == nil {
			res.RSSEnd = v
			res.RSSMax = max(res.RSSMax, v)
		}
		res.HeapEnd, _ = cfg.Client.GoHeap(context.WithoutCancel(ctx))
	}
	slices.Sort(res.Accepted)
	res.Latency = Percentiles(latencies)
	return res, ctx.Err()
}
