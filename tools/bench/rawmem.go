package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/tools/loadgen"
)

// The memory run's yardstick: the raw loop alone in a process of its own,
// making as many P-256 key pairs at the same concurrency as csrd just made,
// on a fresh token in a SoftHSM store of its own (SoftHSM loads every token
// of its store into each process, so sharing csrd's store would count
// csrd's keys in it). The difference between its peak and csrd's is what
// csrd itself holds — HTTP, policy, SQLite, the Go heap of 64 requests —
// beyond what any process pays the token library for the same keys.
//
// The child is this benchmark's own binary, started with rawChildEnv set:
// cmd/csrd-bench calls RunRawMemoryChild first thing.

// rawChildEnv carries the child's job (rawChildJob as JSON). Set, the
// process is the child.
const rawChildEnv = "CSRD_BENCH_RAW_MEMORY_CHILD"

// rawMemLabel is the child's token, in its own store.
const rawMemLabel = "bench-mem-raw"

type rawChildJob struct {
	Module  string `json:"module"`
	Label   string `json:"label"`
	PINFile string `json:"pin_file"` // the PIN stays off argv and out of the environment
	C       int    `json:"c"`
	Pairs   int    `json:"pairs"`
}

// RawMemory is the raw loop's process making KeyPairs P-256 pairs at C.
type RawMemory struct {
	C         int     `json:"c"`
	KeyPairs  int     `json:"key_pairs"`
	PerSecond float64 `json:"per_second"`
	IdleMiB   float64 `json:"idle_mib"` // logged in, before the first key
	PeakMiB   float64 `json:"peak_mib"`
	Threads   int     `json:"threads"`
	Errors    int     `json:"errors"`
}

// RunRawMemoryChild runs the raw-memory child's job when this process was
// started as one, writing its RawMemory as JSON to stdout. It reports
// whether this process was the child; main exits afterwards either way.
func RunRawMemoryChild() (bool, error) {
	spec, ok := os.LookupEnv(rawChildEnv)
	if !ok {
		return false, nil
	}
	var job rawChildJob
	if err := json.Unmarshal([]byte(spec), &job); err != nil {
		return true, fmt.Errorf("bench: raw-memory child: %w", err)
	}
	res, err := job.run(context.Background())
	if err != nil {
		return true, err
	}
	return true, json.NewEncoder(os.Stdout).Encode(res)
}

func (job rawChildJob) run(ctx context.Context) (*RawMemory, error) {
	if job.C < 1 || job.Pairs < 1 {
		return nil, fmt.Errorf("bench: raw-memory child: c %d, pairs %d", job.C, job.Pairs)
	}
	pin, err := os.ReadFile(job.PINFile)
	if err != nil {
		return nil, fmt.Errorf("bench: raw-memory child: %w", err)
	}
	m, err := openRawModule(job.Module)
	if err != nil {
		return nil, err
	}
	defer m.close()
	if err := m.loginToken(job.Label, strings.TrimSpace(string(pin))); err != nil {
		return nil, err
	}
	ws := make([]*rawWorker, job.C)
	for i := range ws {
		if ws[i], err = m.worker(job.Label); err != nil {
			return nil, err
		}
		defer ws[i].close()
	}
	self := os.Getpid()
	res := &RawMemory{C: job.C, KeyPairs: job.Pairs}
	// Settled as csrd's idle figure is (settledRSSMiB), with the sessions
	// open: the same state csrd is in once its pool is warm.
	if res.IdleMiB, err = settledRSSMiB(ctx, self); err != nil {
		return nil, err
	}
	loadgen.ResetPeakRSS(self)
	start := time.Now()
	var firstErr error
	res.Errors, firstErr = generatePairs(ws, job.Pairs)
	res.PerSecond = float64(job.Pairs) / time.Since(start).Seconds()
	peak, err := loadgen.PeakRSS(self)
	if err != nil {
		return nil, err
	}
	res.PeakMiB = loadgen.MiB(peak)
	if res.Threads, err = loadgen.Threads(self); err != nil {
		return nil, err
	}
	if firstErr != nil && res.Errors == job.Pairs {
		return nil, fmt.Errorf("bench: raw-memory child: every key pair failed: %w", firstErr)
	}
	return res, nil
}

// generatePairs makes pairs P-256 key pairs, each worker taking the next
// one as it is free, and returns how many failed and the first failure.
func generatePairs(ws []*rawWorker, pairs int) (int, error) {
	a, _ := lookupAlg("P-256")
	var (
		next   atomic.Int64
		errs   atomic.Int64
		failed atomic.Pointer[error]
		wg     sync.WaitGroup
	)
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(pairs) {
				if err := w.generate(a); err != nil {
					errs.Add(1)
					failed.CompareAndSwap(nil, &err)
				}
			}
		}()
	}
	wg.Wait()
	if e := failed.Load(); e != nil {
		return int(errs.Load()), *e
	}
	return int(errs.Load()), nil
}

// runRawMemory starts the child (binary: this benchmark's executable) on a
// fresh token in a store of its own under dir and reads its result.
func runRawMemory(ctx context.Context, binary, module, dir string, c, pairs int) (*RawMemory, error) {
	tok := &fixture.Token{Dir: filepath.Join(dir, "softhsm-raw-memory"), Module: module}
	if err := tok.AddToken(rawMemLabel); err != nil {
		return nil, err
	}
	job, err := json.Marshal(rawChildJob{Module: module, Label: rawMemLabel, PINFile: tok.PINFile, C: c, Pairs: pairs})
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, binary)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+tok.Conf, rawChildEnv+"="+string(job))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("bench: raw-memory child %s: %w: %s", binary, err, strings.TrimSpace(stderr.String()))
	}
	var res RawMemory
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("bench: raw-memory child's answer %q: %w", stdout.String(), err)
	}
	return &res, nil
}
