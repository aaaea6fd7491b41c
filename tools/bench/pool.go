package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/store"
)

// Pool rows and the failover run each get tokens of their own, fresh at
// the start: rows 1, 2, 4 use bench-pool-1, -2..3, -4..7, failover the next
// two. poolTokens says how many Run must create.
func poolTokens(o Options) int {
	n := 0
	for _, k := range o.PoolTokens {
		n += k
	}
	if o.Failover {
		n += 2
	}
	return n
}

// runPools measures P-256 at PoolC over fresh pools of each size in
// o.PoolTokens (bench-pool-1, then -2..3, -4..7, ...), each pool with its
// own csrd and its own raw loop. Every pool's csrd runs at once and every
// side takes a turn in every round, the order reversed each round
// (ABCDEF FEDCBA ...): the rows are compared with one another ("2 tokens ≥
// 0.95 × 1 token"), and when each row had a window of its own minutes
// apart, the machine's drift between them moved that comparison by ±0.1
// (2 tokens 0.92 and 1.04 in two runs of the same code). It returns the
// rows and the first pool label it did not use.
func runPools(ctx context.Context, raw *rawModule, base serverConfig, o Options) (_ []PoolRow, _ int, err error) {
	a, _ := lookupAlg("P-256")
	rows := make([]PoolRow, len(o.PoolTokens))
	var sides []func(durations) (Measure, error)
	var owner []*Measure // per side: the row's Raw or CSRD it adds up to
	var csrdSide []int   // per row: index of its csrd side, -1 when none
	first := 1
	for i, n := range o.PoolTokens {
		labels := make([]string, n)
		for j := range labels {
			labels[j] = poolLabel(first + j)
		}
		first += n
		rows[i] = PoolRow{Tokens: n, Raw: &Measure{}}
		sides = append(sides, func(d durations) (Measure, error) { return measureRaw(ctx, raw, a, labels, o.PoolC, d) })
		owner = append(owner, rows[i].Raw)

		cfg := base
		cfg.labels, cfg.name = labels, fmt.Sprintf("csrd-pool-%d", n)
		cfg.database = filepath.Join(base.dir, cfg.name+".db")
		// The raw loop writes to these tokens in its turns; see
		// sideBySideHealthInterval.
		cfg.healthInterval = sideBySideHealthInterval
		srv, startErr := startServer(ctx, cfg)
		if startErr != nil {
			if n > 1 && strings.Contains(startErr.Error(), "tokens") {
				rows[i].Unsupported = "csrd refuses hsm.tokens: " + firstLine(startErr.Error())
				csrdSide = append(csrdSide, -1)
				continue
			}
			return nil, 0, startErr
		}
		defer srv.stopAfter(&err) // runPools' result, reported as it returns
		cl := srv.client(o.PoolC)
		defer cl.CloseIdle()
		rows[i].CSRD = &Measure{}
		csrdSide = append(csrdSide, len(sides))
		sides = append(sides, func(d durations) (Measure, error) { return runHTTP(ctx, cl, srv, a, o.PoolC, d) })
		owner = append(owner, rows[i].CSRD)
	}
	turns, err := rotate(o.rounds(a), o.durations(a), sides)
	if err != nil {
		return nil, 0, err
	}
	for k, ms := range turns {
		*owner[k] = combine(ms)
	}
	// Against the first row's csrd, pooled and round by round.
	if len(rows) > 0 && csrdSide[0] >= 0 {
		one := turns[csrdSide[0]]
		rows[0].VsOne = 1
		for i := 1; i < len(rows); i++ {
			if csrdSide[i] < 0 {
				continue
			}
			rows[i].VsOne, rows[i].RoundsVsOne = ratios(one, turns[csrdSide[i]])
		}
	}
	return rows, first, nil
}

// runFailover runs csrd over two fresh tokens for three windows; for the
// middle one the second token is made unusable, then repaired. Every
// Generate must still succeed, and keys must go to the second token again
// afterwards.
func runFailover(ctx context.Context, base serverConfig, tok *fixture.Token, first int, o Options) (_ *Failover, err error) {
	labels := []string{poolLabel(first), poolLabel(first + 1)}
	f := &Failover{Broken: labels[1]}
	cfg := base
	cfg.labels, cfg.name = labels, "csrd-failover"
	cfg.database = filepath.Join(base.dir, cfg.name+".db")
	srv, err := startServer(ctx, cfg)
	if err != nil {
		if strings.Contains(err.Error(), "tokens") {
			f.Unsupported = "csrd refuses hsm.tokens: " + firstLine(err.Error())
			return f, nil
		}
		return nil, err
	}
	defer srv.stopAfter(&err)
	db, err := store.Open(ctx, cfg.database)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	dir, err := tok.StoreDir(labels[1])
	if err != nil {
		return nil, err
	}

	a, _ := lookupAlg("P-256")
	d := o.durations(a)
	third := d.measure
	d.measure = 3 * third
	cl := srv.client(o.PoolC)
	defer cl.CloseIdle()

	var before map[string]int
	phases := make(chan error, 1)
	brk, repair, how := breakToken(dir)
	f.How = how
	win := d.loop(o.PoolC, generateOp(cl, a), func(start bool) {
		if !start {
			return
		}
		go func() {
			var err error
			before, f.DuringOutage, err = outage(ctx, db, third, brk, repair)
			phases <- err
		}()
	}).Run(ctx)
	// The channel orders outage's writes to before and f before the reads.
	if err := <-phases; err != nil {
		return nil, fmt.Errorf("bench: failover: %w", err)
	}
	m := measure(win)
	f.CSRD = &m
	if f.AfterRecovery, err = db.CountByToken(ctx, store.StatePending); err != nil {
		return nil, err
	}
	f.KeysPerToken = before
	// Report the outage and recovery windows as deltas.
	f.DuringOutage = delta(f.DuringOutage, before)
	after := delta(f.AfterRecovery, before)
	f.AfterRecovery = delta(after, f.DuringOutage)
	return f, nil
}

// outage runs in the failover window: a third in, it counts the keys per
// token and breaks the token; another third on, it counts again and repairs
// it.
func outage(ctx context.Context, db *store.Store, third time.Duration, brk, repair func() error) (before, during map[string]int, err error) {
	time.Sleep(third)
	if before, err = db.CountByToken(ctx, store.StatePending); err != nil {
		return before, nil, err
	}
	if err := brk(); err != nil {
		return before, nil, err
	}
	time.Sleep(third)
	if during, err = db.CountByToken(ctx, store.StatePending); err != nil {
		return before, during, err
	}
	return before, during, repair()
}

// breakToken returns how to make the SoftHSM token in dir unusable and
// repair it. Immutable (chattr +i: SoftHSM can create no object file, as
// on a write-protected or full token) is preferred; where the file system
// has no attributes, the directory is moved away as if the token were
// pulled — SoftHSM then marks the token invalid for the rest of the
// process's life, so it does not come back until csrd restarts.
func breakToken(dir string) (brk, repair func() error, how string) {
	if exec.Command("chattr", "+i", dir).Run() == nil && exec.Command("chattr", "-i", dir).Run() == nil {
		return func() error { return exec.Command("chattr", "+i", dir).Run() },
			func() error { return exec.Command("chattr", "-i", dir).Run() },
			"object directory made immutable (read-only token) for the middle third of the run, then writable again"
	}
	moved := dir + ".pulled"
	return func() error { return os.Rename(dir, moved) },
		func() error { return os.Rename(moved, dir) },
		"object directory moved away (token pulled) for the middle third of the run, then back"
}

func delta(a, b map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range a {
		out[k] = v - b[k]
	}
	return out
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
