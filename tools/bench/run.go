package bench

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/store"
	"github.com/csrd/csrd/tools/loadgen"
)

// Options configures a run. Durations apply per cell and per side.
type Options struct {
	CSRD        string        // csrd binary
	Dir         string        // work directory: tokens, databases, configs, logs
	DBDir       string        // csrd's main database goes here instead of Dir (e.g. another disk)
	Algs        []string      // P-256, Ed25519, RSA-2048
	Concurrency []int         // C values
	Warmup      time.Duration // before each window (and until every worker finished one op)
	Duration    time.Duration // measurement window for P-256 and Ed25519
	SlowFactor  int           // RSA windows are this many times longer
	FillKeys    int           // repeat P-256 once the token holds this many csrd keys (0: skip)
	FillWorkers int
	PoolTokens  []int // token counts for the pool comparison (e.g. 1,2,4; empty: skip)
	PoolC       int   // concurrency of the pool comparison
	Failover    bool  // run the two-token failover measurement
	MemoryC     int   // concurrency of the memory run on a fresh token (0: skip)
	// BenchBinary is this benchmark's executable, started as the memory
	// run's raw-loop child (RunRawMemoryChild); empty skips that child.
	BenchBinary string
	MaxSessions int   // csrd's hsm.max_sessions
	Rounds      int   // turns per side in a cell (the window is split between them)
	NoiseC      []int // C values of the raw-vs-raw cells (P-256; empty: skip)
	// NoiseSlowC are the C values of raw-vs-raw cells for RSA-2048, with
	// its cells' one long turn per side: its ratios move with the prime
	// search's luck far more than P-256's with the machine's drift.
	NoiseSlowC []int
	// Token is the token of the side-by-side cells: "softhsm" (default),
	// "p11kit" (SoftHSM exported by a p11-kit server, every call over a
	// unix socket) or "tpm" (swtpm with tpm2-pkcs11). The fill, pool,
	// failover, memory and backend runs are SoftHSM's and are skipped on
	// the others.
	Token string
	// TokenCells are the other tokens ("p11kit", "tpm") whose short
	// side-by-side cells follow the run, each on a fresh token of its own
	// (TokenCellsOptions); empty skips them.
	TokenCells []string
	// TokenAlgs, TokenC and TokenDuration are those cells' key types,
	// concurrency levels and window (RSA's ×SlowFactor, one turn per side).
	TokenAlgs     []string
	TokenC        []int
	TokenDuration time.Duration
	// TokenCellsOnly runs the token cells alone: no SoftHSM phases.
	TokenCellsOnly bool
	// BackendC is the concurrency of csrd on PostgreSQL against csrd on
	// SQLite (0: skip); BackendsOnly runs that comparison alone.
	BackendC     int
	BackendsOnly bool
	// Goals are what the report's targets hold csrd to (nil: the
	// built-in targets.json).
	Goals    *Goals
	Progress io.Writer
}

// Report is the result of a run.
type Report struct {
	Started  time.Time  `json:"started"`
	Finished time.Time  `json:"finished"`
	Machine  Machine    `json:"machine"`
	Options  ReportOpts `json:"options"`
	Cells    []Cell     `json:"cells"`
	Noise    []Noise    `json:"noise,omitempty"`
	Fill     *FillInfo  `json:"fill,omitempty"`
	Pool     []PoolRow  `json:"pool,omitempty"`
	Failover *Failover  `json:"failover,omitempty"`
	Memory   *Memory    `json:"memory,omitempty"`
	// Tokens are the token cells (Options.TokenCells): csrd and the raw
	// loop side by side on each other token.
	Tokens   []TokenRun `json:"tokens,omitempty"`
	Backends *Backends  `json:"backends,omitempty"`
	// Goals are what Targets holds the figures to (nil: targets.json).
	Goals *Goals `json:"goals,omitempty"`
}

// ReportOpts are the options worth recording with the figures.
type ReportOpts struct {
	WarmupS     float64 `json:"warmup_s"`
	DurationS   float64 `json:"duration_s"`
	SlowFactor  int     `json:"slow_factor"`
	MaxSessions int     `json:"max_sessions"`
	FillKeys    int     `json:"fill_keys"`
	PoolC       int     `json:"pool_c"`
	Client      string  `json:"client"`          // the HTTP client driving csrd: "net/http" ("lean" in older reports)
	Token       string  `json:"token,omitempty"` // the token of the cells, when not SoftHSM directly
	// HealthIntervalS is csrd's hsm.health_interval in the side-by-side
	// cells (0 in reports from before it was set: csrd's default, 10 s).
	HealthIntervalS float64 `json:"health_interval_s,omitempty"`
	// TokenDurationS is the token cells' window (Options.TokenDuration).
	TokenDurationS float64 `json:"token_duration_s,omitempty"`
}

// Cell is one key type at one concurrency: raw loop and csrd side by side.
type Cell struct {
	Phase      string   `json:"phase"` // "empty" (fresh token) or "filled"
	Alg        string   `json:"alg"`
	C          int      `json:"c"`
	StoredKeys int      `json:"stored_keys"` // csrd keys (with records) on the token when the cell started
	RawKeys    int      `json:"raw_keys"`    // key pairs the raw loop left on the tokens so far
	Raw        *Measure `json:"raw,omitempty"`
	CSRD       *Measure `json:"csrd,omitempty"`
	// Ratio is csrd/raw throughput, csrd's with its client's CPU given
	// back (Measure.givenBack): the figure the targets judge.
	Ratio float64 `json:"ratio,omitempty"`
	// MeasuredRatio is csrd/raw throughput as measured, the client's CPU
	// taken from csrd's side.
	MeasuredRatio float64 `json:"measured_ratio,omitempty"`
	// RoundRatios is Ratio of each round (a raw turn and the
	// csrd turn next to it): their spread says how far the cell's Ratio can
	// be trusted on a machine whose speed drifts under it.
	RoundRatios []float64 `json:"round_ratios,omitempty"`
	Unsupported string    `json:"unsupported,omitempty"`
}

// Noise is the raw loop measured against itself with a cell's schedule and
// windows (P-256 on the main token, after the P-256 cells): the two sides
// do exactly the same work, so any distance of Ratio or of a round's ratio
// from 1 is this machine's drift between turns, not anybody's overhead.
// It is the yardstick for how far a cell's (b)/(a) can be trusted.
type Noise struct {
	Alg         string    `json:"alg,omitempty"` // "" in reports before RSA had noise cells: P-256
	C           int       `json:"c"`
	A           *Measure  `json:"a"`
	B           *Measure  `json:"b"` // the turns csrd takes in a cell
	Ratio       float64   `json:"ratio"`
	RoundRatios []float64 `json:"round_ratios,omitempty"`
}

// FillInfo says how the token was filled for the "filled" phase.
type FillInfo struct {
	Added   int     `json:"added"`
	Total   int     `json:"total"`
	Seconds float64 `json:"seconds"`
}

// PoolRow is csrd over n tokens at PoolC.
type PoolRow struct {
	Tokens int      `json:"tokens"`
	Raw    *Measure `json:"raw,omitempty"`
	CSRD   *Measure `json:"csrd,omitempty"`
	VsOne  float64  `json:"vs_one_token,omitempty"` // csrd throughput / csrd with the first row's tokens
	// RoundsVsOne is VsOne round by round (a turn of each).
	RoundsVsOne []float64 `json:"rounds_vs_one_token,omitempty"`
	Unsupported string    `json:"unsupported,omitempty"`
}

// Failover is a two-token run in which one token is made unusable for the
// middle third and then repaired.
type Failover struct {
	CSRD          *Measure       `json:"csrd,omitempty"`
	Broken        string         `json:"broken_token"`
	How           string         `json:"how"`
	KeysPerToken  map[string]int `json:"keys_per_token"`
	DuringOutage  map[string]int `json:"keys_during_outage"`
	AfterRecovery map[string]int `json:"keys_after_recovery"`
	Unsupported   string         `json:"unsupported,omitempty"`
}

type durations struct{ warmup, measure, maxWarm time.Duration }

// loop is a closed loop of c workers on d's schedule.
func (d durations) loop(c int, op func(ctx context.Context, worker, seq int) error, mark func(start bool)) loadgen.Loop {
	return loadgen.Loop{Workers: c, Warmup: d.warmup, Duration: d.measure, MaxWarm: d.maxWarm, Op: op, Mark: mark}
}

// generateOp is a closed loop's operation against csrd: worker's seq-th
// Generate of key type a, an error unless csrd answers with a CSR.
func generateOp(cl *loadgen.Client, a alg) func(ctx context.Context, worker, seq int) error {
	return func(ctx context.Context, w, seq int) error { return cl.Generate(ctx, a.requestBody(w, seq)).Failure() }
}

const mainLabel = "bench-main"

func poolLabel(i int) string { return fmt.Sprintf("bench-pool-%d", i) }

// Run performs the whole benchmark: the side-by-side cells on
// Options.Token with SoftHSM's other phases, then the token cells.
func Run(ctx context.Context, o Options) (*Report, error) {
	var r *Report
	if o.TokenCellsOnly {
		r = &Report{Started: time.Now().UTC(), Machine: machine(softhsmVersion()), Goals: o.Goals,
			Options: ReportOpts{WarmupS: o.Warmup.Seconds(), DurationS: o.TokenDuration.Seconds(), SlowFactor: o.SlowFactor,
				MaxSessions: o.MaxSessions, Client: "net/http", HealthIntervalS: sideBySideHealthInterval.Seconds()}}
	} else {
		var err error
		if r, err = runSideBySide(ctx, o); err != nil {
			return nil, err
		}
	}
	if o.BackendsOnly { // the comparison alone: no token cells either
		return r, nil
	}
	r.Options.TokenDurationS = o.TokenDuration.Seconds()
	var err error
	if r.Tokens, err = runTokenCells(ctx, o); err != nil {
		return nil, err
	}
	r.Finished = time.Now().UTC()
	return r, nil
}

// runSideBySide is the benchmark of Options.Token: its side-by-side cells
// and, on SoftHSM, the fill, pool, failover and memory runs.
func runSideBySide(ctx context.Context, o Options) (*Report, error) {
	b := &benchRun{o: o, progress: o.Progress, r: &Report{Started: time.Now().UTC(), Options: ReportOpts{
		WarmupS: o.Warmup.Seconds(), DurationS: o.Duration.Seconds(), SlowFactor: o.SlowFactor,
		MaxSessions: o.MaxSessions, FillKeys: o.FillKeys, PoolC: o.PoolC, Client: "net/http",
		HealthIntervalS: sideBySideHealthInterval.Seconds(),
	}, Goals: o.Goals}}
	if b.progress == nil {
		b.progress = io.Discard
	}
	if o.Token != "" && o.Token != "softhsm" {
		o.FillKeys, o.PoolTokens, o.Failover, o.MemoryC, o.BackendC, o.BackendsOnly = 0, nil, false, 0, 0, false
		b.o, b.r.Options.Token, b.r.Options.FillKeys = o, o.Token, 0
	}
	tok, err := setupTokens(o)
	if err != nil {
		return nil, err
	}
	b.tok = tok
	cell, stopCell, err := cellToken(o, tok)
	if err != nil {
		return nil, err
	}
	defer stopCell()
	b.cell = cell
	b.r.Machine = machine(softhsmVersion())
	if b.raw, err = openRawModule(cell.module); err != nil {
		return nil, err
	}
	defer b.raw.close()
	if err := b.prepare(); err != nil {
		return nil, err
	}
	if o.BackendsOnly {
		if err := b.backends(ctx); err != nil {
			return nil, err
		}
		b.r.Finished = time.Now().UTC()
		return b.r, nil
	}

	// Phase 0: csrd's memory, first — SoftHSM loads the objects of every
	// token in its store into each process, so later it would count the
	// other phases' keys too.
	if o.MemoryC > 0 {
		if b.r.Memory, err = runMemory(ctx, b.base, o); err != nil {
			return nil, err
		}
		b.say("memory: %s", b.r.Memory.summary())
	}
	// Phases 1 and 2: the main token, fresh and then filled.
	if err := b.mainToken(ctx); err != nil {
		return nil, err
	}
	// Phase 3: pools of 1, 2, 4 fresh tokens side by side, then failover.
	if err := b.poolsAndFailover(ctx); err != nil {
		return nil, err
	}
	// Phase 4: csrd on PostgreSQL against csrd on SQLite.
	if err := b.backends(ctx); err != nil {
		return nil, err
	}
	b.r.Finished = time.Now().UTC()
	return b.r, nil
}

// benchRun is what the phases of one Run share.
type benchRun struct {
	o        Options
	r        *Report
	progress io.Writer
	tok      *fixture.Token
	cell     cellTok // the main token of the side-by-side cells
	raw      *rawModule
	base     serverConfig // csrd's configuration, before a phase picks its tokens
}

func (b *benchRun) say(format string, args ...any) { fmt.Fprintf(b.progress, format+"\n", args...) }

// setupTokens creates the main token and, in the same SoftHSM store, the
// pool and failover tokens and the memory run's.
func setupTokens(o Options) (*fixture.Token, error) {
	tok, err := fixture.Setup(filepath.Join(o.Dir, "softhsm"), mainLabel)
	if err != nil {
		return nil, err
	}
	for i := range poolTokens(o) {
		if err := tok.AddToken(poolLabel(i + 1)); err != nil {
			return nil, err
		}
	}
	if o.MemoryC > 0 {
		if err := tok.AddToken(memLabel); err != nil {
			return nil, err
		}
	}
	if o.BackendC > 0 {
		for _, l := range []string{backendSQLite, backendPostgres} {
			if err := tok.AddToken(l); err != nil {
				return nil, err
			}
		}
	}
	return tok, nil
}

// prepare logs the raw loop in to the main and pool tokens and writes the
// auth file csrd's configuration names.
func (b *benchRun) prepare() error {
	if err := b.raw.loginToken(mainLabel, b.cell.pin); err != nil {
		return err
	}
	for _, l := range poolLabels(poolTokens(b.o)) {
		if err := b.raw.loginToken(l, b.tok.PIN); err != nil {
			return err
		}
	}
	authFile := filepath.Join(b.o.Dir, "auth.yaml")
	bearer, err := writeAuthFile(authFile)
	if err != nil {
		return err
	}
	b.base = serverConfig{binary: b.o.CSRD, module: b.tok.Module, conf: b.tok.Conf, pinFile: b.tok.PINFile,
		maxSessions: b.o.MaxSessions, dir: b.o.Dir, authFile: authFile, bearer: bearer}
	return nil
}

// mainToken runs phase 1 (every key type and concurrency on the fresh main
// token, each followed by its noise cells) and, with FillKeys, phase 2.
func (b *benchRun) mainToken(ctx context.Context) error {
	cfg := b.base
	cfg.module, cfg.pinFile = b.cell.module, b.cell.pinFile
	cfg.labels, cfg.database, cfg.name = []string{mainLabel}, filepath.Join(cmp.Or(b.o.DBDir, b.o.Dir), "main.db"), "csrd-main"
	cfg.healthInterval = sideBySideHealthInterval
	srv, err := startServer(ctx, cfg)
	if err != nil {
		return err
	}
	db, err := store.Open(ctx, cfg.database) // read-mostly: key counts between cells
	if err != nil {
		_ = srv.stop() // the open's error is the one to report
		return err
	}
	defer db.Close()
	err = b.emptyToken(ctx, srv, db)
	if stopErr := srv.stop(); err == nil {
		err = stopErr
	}
	if err != nil || b.o.FillKeys == 0 {
		return err
	}
	return b.filledToken(ctx, cfg, db)
}

// emptyToken is phase 1 on csrd srv.
func (b *benchRun) emptyToken(ctx context.Context, srv *server, db *store.Store) error {
	for _, name := range b.o.Algs {
		a, err := lookupAlg(name)
		if err != nil {
			return err
		}
		if err := b.cells(ctx, srv, db, a, "empty"); err != nil {
			return err
		}
		// Right after the cells it calibrates, on the same token.
		for _, c := range b.o.noiseC(a) {
			n, err := runNoise(ctx, b.raw, a, c, b.o)
			if err != nil {
				return err
			}
			b.say("noise  %-8s C=%-3d %s", a.Name, c, n.summary())
			b.r.Noise = append(b.r.Noise, n)
		}
	}
	return nil
}

// filledToken is phase 2: the main token brought to FillKeys csrd keys (with
// csrd stopped), then P-256 at every concurrency on a new csrd.
func (b *benchRun) filledToken(ctx context.Context, cfg serverConfig, db *store.Store) (err error) {
	t0 := time.Now()
	added, err := b.raw.fill(ctx, db, mainLabel, b.o.FillKeys, b.o.FillWorkers)
	if err != nil {
		return err
	}
	b.r.Fill = &FillInfo{Added: added, Total: b.o.FillKeys, Seconds: time.Since(t0).Seconds()}
	b.say("fill: %d keys added in %.1fs", added, b.r.Fill.Seconds)
	cfg.name = "csrd-filled"
	srv, err := startServer(ctx, cfg)
	if err != nil {
		return err
	}
	defer srv.stopAfter(&err)
	a, _ := lookupAlg("P-256")
	return b.cells(ctx, srv, db, a, "filled")
}

// cells measures key type a at every concurrency, raw loop and csrd srv
// side by side; a key type csrd does not support takes one line for all.
func (b *benchRun) cells(ctx context.Context, srv *server, db *store.Store, a alg, phase string) error {
	for _, c := range b.o.Concurrency {
		cell, err := runCell(ctx, b.raw, srv, db, a, c, phase, b.o)
		if err != nil {
			return err
		}
		b.say("%-6s %-8s C=%-3d %s", cell.Phase, cell.Alg, cell.C, cell.summary())
		b.r.Cells = append(b.r.Cells, cell)
		if cell.Unsupported != "" {
			break
		}
	}
	return nil
}

// poolsAndFailover is phase 3: the pool rows, then the failover run on the
// next two fresh tokens.
func (b *benchRun) poolsAndFailover(ctx context.Context) error {
	first := 1
	if len(b.o.PoolTokens) > 0 {
		rows, next, err := runPools(ctx, b.raw, b.base, b.o)
		if err != nil {
			return err
		}
		for _, row := range rows {
			b.say("pool   P-256    C=%-3d tokens=%d %s", b.o.PoolC, row.Tokens, row.summary())
		}
		b.r.Pool, first = rows, next
	}
	if !b.o.Failover {
		return nil
	}
	f, err := runFailover(ctx, b.base, b.tok, first, b.o)
	if err != nil {
		return err
	}
	b.say("failover: %s", f.summary())
	b.r.Failover = f
	return nil
}

// backends runs the backend comparison when BackendC is set.
func (b *benchRun) backends(ctx context.Context) error {
	if b.o.BackendC <= 0 {
		return nil
	}
	r, err := runBackends(ctx, b.base, b.o)
	if err != nil {
		return err
	}
	b.say("backends C=%-3d %s", b.o.BackendC, r.summary())
	b.r.Backends = r
	return nil
}

func poolLabels(n int) []string {
	ls := make([]string, n)
	for i := range ls {
		ls[i] = poolLabel(i + 1)
	}
	return ls
}

func (o Options) durations(a alg) durations {
	d := durations{warmup: o.Warmup, measure: o.Duration, maxWarm: 2 * time.Minute}
	if a.slow && o.SlowFactor > 1 {
		d.measure *= time.Duration(o.SlowFactor)
	}
	return d
}

// runCell measures key type a at concurrency c: raw loop, then csrd.
func runCell(ctx context.Context, raw *rawModule, srv *server, db *store.Store, a alg, c int, phase string, o Options) (Cell, error) {
	cell := Cell{Phase: phase, Alg: a.Name, C: c}
	counts, err := db.CountByState(ctx)
	if err != nil {
		return cell, err
	}
	cell.StoredKeys = counts[store.StatePending]
	cell.RawKeys = raw.rawKeys()
	cl := srv.client(c)
	defer cl.CloseIdle()
	if !a.supported {
		// Ask csrd anyway: it says what it does not support.
		ans := cl.Generate(ctx, a.requestBody(0, 0))
		err := ans.Failure()
		switch {
		case ans.Status == http.StatusBadRequest && ans.ErrorCode == errNotSupported:
			cell.Unsupported = "hsm has no " + a.Name + " key type in this build; csrd answers " + ans.ErrorCode + " " + ans.Message
		case err == nil:
			cell.Unsupported = "hsm has no " + a.Name + " key type in this build, but csrd generated one"
		default:
			cell.Unsupported = "hsm has no " + a.Name + " key type in this build; csrd: " + err.Error()
		}
		return cell, nil
	}
	raws, csrds, err := alternate(o.rounds(a), o.durations(a),
		func(d durations) (Measure, error) { return measureRaw(ctx, raw, a, []string{mainLabel}, c, d) },
		func(d durations) (Measure, error) { return runHTTP(ctx, cl, srv, a, c, d) })
	if err != nil {
		return cell, err
	}
	rm, cm := combine(raws), combine(csrds)
	cell.Raw, cell.CSRD = &rm, &cm
	cell.Ratio, cell.RoundRatios = ratios(raws, csrds)
	if rm.PerSecond > 0 {
		cell.MeasuredRatio = cm.PerSecond / rm.PerSecond
	}
	return cell, nil
}

// runNoise measures the raw loop against itself at c, with the schedule a
// cell of key type a has.
func runNoise(ctx context.Context, raw *rawModule, a alg, c int, o Options) (Noise, error) {
	side := func(d durations) (Measure, error) { return measureRaw(ctx, raw, a, []string{mainLabel}, c, d) }
	as, bs, err := alternate(o.rounds(a), o.durations(a), side, side)
	if err != nil {
		return Noise{C: c}, err
	}
	am, bm := combine(as), combine(bs)
	n := Noise{Alg: a.Name, C: c, A: &am, B: &bm}
	n.Ratio, n.RoundRatios = ratios(as, bs)
	return n, nil
}

// errNotSupported is csrd's ErrorCode for a key type this build lacks.
const errNotSupported = "0xA0030002"

// sideBySideHealthInterval is csrd's hsm.health_interval while it shares
// its token with the raw loop. After another process has written to a
// token, SoftHSM re-reads the token's whole object directory in csrd's
// process at csrd's next health check (an fstatat per file: 0.7 s of CPU
// at 150,000 object files on an idle machine, and 4.4 s per check while
// the raw loop kept writing), and that ran in the raw loop's turns, when
// csrd was meant to be idle: 0.44 of a core taken from the raw loop, which
// lifted RSA-2048's (b)/(a) at C=2 and 4 to 1.14-1.34 in three runs and
// P-256's filled cells at C=2 and 4 above 1. The benchmark process makes
// no call in csrd's turns, so it never pays the like for csrd's keys. With
// one check a day csrd is as idle in the raw loop's turns as the raw loop
// in csrd's. With nobody else writing to the token, as in production, a
// check costs csrd about 5 ms at 150,000 object files.
const sideBySideHealthInterval = 24 * time.Hour

// noiseC is which noise cells follow a's cells: those of the key types
// that calibrate themselves (alg.calibratedBy), P-256 and the slow ones.
func (o Options) noiseC(a alg) []int {
	switch {
	case a.calibratedBy() != a.Name:
		return nil
	case a.slow:
		return o.NoiseSlowC
	}
	return o.NoiseC
}

// alternate gives two sides turns in rounds, each turn a rounds-th of d's
// window, so that load from other processes drifting during a cell hits
// both alike; the order within a round is ABBA (a, b, b, a, ...), which
// cancels a linear drift.
func alternate(rounds int, d durations, a, b func(durations) (Measure, error)) (as, bs []Measure, err error) {
	turns, err := rotate(rounds, d, []func(durations) (Measure, error){a, b})
	if err != nil {
		return nil, nil, err
	}
	return turns[0], turns[1], nil
}

// rotate is alternate for any number of sides: every round gives each side
// a turn, in order in even rounds and reversed in odd ones (ABC CBA ...),
// so a linear drift hits every side alike. turns[k] are side k's turns.
func rotate(rounds int, d durations, sides []func(durations) (Measure, error)) (turns [][]Measure, err error) {
	d.measure /= time.Duration(rounds)
	turns = make([][]Measure, len(sides))
	for i := range rounds {
		for j := range sides {
			k := j
			if i%2 != 0 {
				k = len(sides) - 1 - j
			}
			m, err := sides[k](d)
			if err != nil {
				return nil, err
			}
			turns[k] = append(turns[k], m)
		}
	}
	return turns, nil
}

// ratios is b's throughput over a's, each with its client's CPU given back
// (Measure.givenBack), pooled over all turns and per round (a turn of each
// side).
func ratios(as, bs []Measure) (pooled float64, rounds []float64) {
	am, bm := combine(as), combine(bs)
	if am.PerSecond > 0 {
		pooled = bm.givenBack() / am.givenBack()
	}
	for i := range min(len(as), len(bs)) {
		if as[i].PerSecond > 0 {
			rounds = append(rounds, bs[i].givenBack()/as[i].givenBack())
		}
	}
	return pooled, rounds
}

// measureRaw runs the raw loop over labels, measuring this process's CPU.
func measureRaw(ctx context.Context, raw *rawModule, a alg, labels []string, c int, d durations) (Measure, error) {
	var cpuStart, cpuUsed float64
	self := os.Getpid()
	m, err := raw.runRaw(ctx, a, labels, c, d, func(start bool) {
		v := loadgen.SelfCPUSeconds()
		if start {
			cpuStart = v
			loadgen.ResetPeakRSS(self)
		} else {
			cpuUsed = v - cpuStart
		}
	})
	m.CPUPerOp = perOp(cpuUsed, m.Ops)
	// The raw loop's process holds SoftHSM's copy of the token too: its
	// peak RSS is the yardstick for csrd's.
	m.PeakRSSMiB = peakMiB(self)
	return m, err
}

// runHTTP runs the closed loop against csrd, measuring csrd's CPU and peak RSS.
func runHTTP(ctx context.Context, cl *loadgen.Client, srv *server, a alg, c int, d durations) (Measure, error) {
	return runHTTPMarked(ctx, cl, srv, a, c, d, nil)
}

// runHTTPMarked is runHTTP that also calls mark (when set) at the start
// and the end of the measurement window.
func runHTTPMarked(ctx context.Context, cl *loadgen.Client, srv *server, a alg, c int, d durations, mark func(start bool)) (Measure, error) {
	var cpu0, cpu, self0, selfCPU float64
	win := d.loop(c, generateOp(cl, a), func(start bool) {
		if mark != nil {
			mark(start)
		}
		v, _ := loadgen.CPUSeconds(srv.pid())
		s := loadgen.SelfCPUSeconds()
		if start {
			cpu0, self0 = v, s
			loadgen.ResetPeakRSS(srv.pid())
		} else {
			cpu, selfCPU = v-cpu0, s-self0
		}
	}).Run(ctx)
	m := measure(win)
	m.CPUPerOp = perOp(cpu, m.Ops)
	m.ClientCPUPerOp = perOp(selfCPU, m.Ops)
	m.setGivenBack()
	m.PeakRSSMiB = peakMiB(srv.pid())
	return m, nil
}

// rounds is how many turns each side gets in a cell: RSA's warm-up at high
// concurrency is seconds long, so it gets one long turn.
func (o Options) rounds(a alg) int {
	if a.slow || o.Rounds < 1 {
		return 1
	}
	return o.Rounds
}

// peakMiB is pid's peak RSS in the window just ended, in MiB; 0 when it
// cannot be read.
func peakMiB(pid int) float64 {
	b, _ := loadgen.PeakRSS(pid)
	return loadgen.MiB(b)
}

func perOp(cpu float64, ops int) float64 {
	if ops == 0 {
		return 0
	}
	return cpu / float64(ops)
}

func softhsmVersion() string {
	out, err := exec.Command("softhsm2-util", "--version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
