package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/csrd/csrd/store"
	"github.com/csrd/csrd/tools/loadgen"
)

// memLabel is the token of the memory run, fresh when it starts.
const memLabel = "bench-mem"

// Memory is csrd's resident memory at MemoryC on a fresh token, and what of
// it is SoftHSM's: SoftHSM reads every object of every token in its store
// into each process that initialises it, so in the side-by-side cells —
// which run one after another — csrd's peak grows with every key the cells
// before made (the raw loop's process shows the same growth). This run,
// first of all while every token is empty, separates the two: csrd idle,
// its peak while making keys at MemoryC, and a new csrd idle on that token
// once it holds those keys.
type Memory struct {
	C                int      `json:"c"`
	CSRD             *Measure `json:"csrd,omitempty"`
	IdleFreshMiB     float64  `json:"idle_fresh_mib"`     // csrd just started, empty token
	KeyPairs         int      `json:"key_pairs"`          // key pairs on the token after the run
	IdleRestartedMiB float64  `json:"idle_restarted_mib"` // a new csrd just started on that token
	PerKeyPairKiB    float64  `json:"per_key_pair_kib"`   // (restarted − fresh) / key pairs
	// What Go's runtime reports at the end of the window (csrd's /metrics):
	// GoSysMiB is all the memory the runtime has mapped (it never shrinks,
	// so it bounds Go's share of the peak from above); the rest of the peak
	// is C memory — SoftHSM's objects, sqlite's cache, libc's arenas — and
	// the threads' stacks. Threads is csrd's at the end of the window: about
	// one per cgo call blocked in the token at once.
	GoSysMiB       float64 `json:"go_sys_mib,omitempty"`
	GoHeapInuseMiB float64 `json:"go_heap_inuse_mib,omitempty"`
	Threads        int     `json:"threads,omitempty"`
	// Raw is the raw loop alone in a process of its own making as many key
	// pairs at the same C (rawmem.go): what the token library costs any
	// process for them. Nil when no benchmark binary was given to run it.
	Raw *RawMemory `json:"raw,omitempty"`
}

// runMemory measures csrd alone (no raw loop: its objects would count too)
// with P-256 at o.MemoryC on the fresh token memLabel.
func runMemory(ctx context.Context, base serverConfig, o Options) (_ *Memory, err error) {
	mem := &Memory{C: o.MemoryC}
	a, _ := lookupAlg("P-256")
	cfg := base
	cfg.labels, cfg.name = []string{memLabel}, "csrd-mem"
	cfg.database = filepath.Join(base.dir, cfg.name+".db")
	srv, err := startServer(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if mem.IdleFreshMiB, err = settledRSSMiB(ctx, srv.pid()); err != nil {
		_ = srv.stop()
		return nil, err
	}
	cl := srv.client(o.MemoryC)
	m, err := runHTTP(ctx, cl, srv, a, o.MemoryC, o.durations(a))
	cl.CloseIdle()
	if err == nil {
		err = mem.readGoMemory(ctx, srv)
	}
	if stopErr := srv.stop(); err == nil {
		err = stopErr
	}
	if err != nil {
		return nil, err
	}
	mem.CSRD = &m
	// Every key csrd made, warm-up included, is a pending record.
	db, err := store.Open(ctx, cfg.database)
	if err != nil {
		return nil, err
	}
	counts, err := db.CountByState(ctx)
	_ = db.Close()
	if err != nil {
		return nil, err
	}
	mem.KeyPairs = counts[store.StatePending]

	cfg.name = "csrd-mem-restarted"
	if srv, err = startServer(ctx, cfg); err != nil {
		return nil, err
	}
	defer srv.stopAfter(&err)
	if mem.IdleRestartedMiB, err = settledRSSMiB(ctx, srv.pid()); err != nil {
		return nil, err
	}
	if mem.KeyPairs > 0 {
		mem.PerKeyPairKiB = (mem.IdleRestartedMiB - mem.IdleFreshMiB) * 1024 / float64(mem.KeyPairs)
	}
	if o.BenchBinary != "" && mem.KeyPairs > 0 {
		if mem.Raw, err = runRawMemory(ctx, o.BenchBinary, base.module, base.dir, o.MemoryC, mem.KeyPairs); err != nil {
			return nil, err
		}
	}
	return mem, nil
}

// readGoMemory scrapes csrd's /metrics for the Go runtime's own figures.
func (mem *Memory) readGoMemory(ctx context.Context, srv *server) error {
	cl := srv.client(1)
	defer cl.CloseIdle()
	vals, err := cl.Metrics(ctx, "go_memstats_sys_bytes", "go_memstats_heap_inuse_bytes")
	if err != nil {
		return err
	}
	mem.GoSysMiB = vals[0] / (1 << 20)
	mem.GoHeapInuseMiB = vals[1] / (1 << 20)
	mem.Threads, err = loadgen.Threads(srv.pid())
	return err
}

// settledRSSMiB is pid's resident set once start-up is over: read after a
// short pause, so the reconciliation's and the first login's allocations
// are in it.
func settledRSSMiB(ctx context.Context, pid int) (float64, error) {
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(time.Second):
	}
	b, err := loadgen.RSS(pid)
	return loadgen.MiB(b), err
}

func (m *Memory) summary() string {
	if m.CSRD == nil {
		return "not measured"
	}
	s := fmt.Sprintf("C=%d: idle %.1f MiB, peak %.1f MiB (%d key pairs made, %.1f/s; Go runtime mapped %.1f MiB, heap in use %.1f MiB, %d threads), restarted idle %.1f MiB (%.1f KiB per key pair)",
		m.C, m.IdleFreshMiB, m.CSRD.PeakRSSMiB, m.KeyPairs, m.CSRD.PerSecond, m.GoSysMiB, m.GoHeapInuseMiB, m.Threads, m.IdleRestartedMiB, m.PerKeyPairKiB)
	if r := m.Raw; r != nil {
		s += fmt.Sprintf("; raw loop alone, same pairs: idle %.1f MiB, peak %.1f MiB (%.1f/s, %d threads)", r.IdleMiB, r.PeakMiB, r.PerSecond, r.Threads)
	}
	return s
}
