package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/csrd/csrd/store"
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
}

// runMemory measures csrd alone (no raw loop: its objects would count too)
// with P-256 at o.MemoryC on the fresh token memLabel.
func runMemory(ctx context.Context, base serverConfig, o Options) (*Memory, error) {
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
	cl, err := o.newClient(srv, o.MemoryC)
	if err != nil {
		_ = srv.stop()
		return nil, err
	}
	m, err := runHTTP(ctx, cl, srv, a, o.MemoryC, o.durations(a))
	cl.close()
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
	defer srv.stop()
	if mem.IdleRestartedMiB, err = settledRSSMiB(ctx, srv.pid()); err != nil {
		return nil, err
	}
	if mem.KeyPairs > 0 {
		mem.PerKeyPairKiB = (mem.IdleRestartedMiB - mem.IdleFreshMiB) * 1024 / float64(mem.KeyPairs)
	}
	return mem, nil
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
	return rssMiB(pid)
}

func (m *Memory) summary() string {
	if m.CSRD == nil {
		return "not measured"
	}
	return fmt.Sprintf("C=%d: idle %.1f MiB, peak %.1f MiB (%d key pairs made, %.1f/s), restarted idle %.1f MiB (%.1f KiB per key pair)",
		m.C, m.IdleFreshMiB, m.CSRD.PeakRSSMiB, m.KeyPairs, m.CSRD.PerSecond, m.IdleRestartedMiB, m.PerKeyPairKiB)
}
