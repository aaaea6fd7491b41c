package bench

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // pg_stat_database, read beside csrd

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/tools/loadgen"
)

// Backends is csrd on PostgreSQL against csrd on SQLite: P-256 Generates at
// C on a fresh token each, both csrds running at once and taking turns as
// the pool rows do, so that the machine's drift falls on both.
type Backends struct {
	C        int          `json:"c"`
	SQLite   *BackendSide `json:"sqlite,omitempty"`
	Postgres *BackendSide `json:"postgres,omitempty"`
	// Ratio is PostgreSQL's throughput / SQLite's (each with its client's
	// CPU given back); RoundRatios the same, round by round.
	Ratio       float64   `json:"ratio,omitempty"`
	RoundRatios []float64 `json:"round_ratios,omitempty"`
	Unsupported string    `json:"unsupported,omitempty"`
}

// BackendSide is one backend's csrd in the comparison. Its figures come
// from csrd's /metrics (csrd_db_*), read at the start and end of each of
// its measurement windows.
type BackendSide struct {
	CSRD *Measure `json:"csrd"`
	// CommitsPerGenerate are the group commits per CSR answered (under
	// load, writes of several requests share one); WritesPerGenerate the
	// write transactions each Generate asked for.
	CommitsPerGenerate float64 `json:"commits_per_generate"`
	WritesPerGenerate  float64 `json:"writes_per_generate"`
	// DBShare is the time Generates waited for their database writes
	// (queueing for the writer included) over their whole time: in a
	// closed loop C requests are always in flight, so C × the window.
	DBShare float64 `json:"db_share"`
	// XactPerGenerate is PostgreSQL's own count (pg_stat_database
	// xact_commit, read-only transactions included) per CSR; PostgreSQL
	// only. A busy session's statistics reach it at most once a second, so
	// the figure is only as good as the windows are long.
	XactPerGenerate float64 `json:"xact_commit_per_generate,omitempty"`
	// ServerCPUPerGenerate is the database server's CPU seconds per CSR
	// (the postmaster and its backends, on the same cores as csrd and the
	// token); PostgreSQL only: SQLite's work is inside csrd's own CPU.
	ServerCPUPerGenerate float64 `json:"server_cpu_s_per_generate,omitempty"`
}

const (
	backendSQLite   = "bench-backend-sqlite"
	backendPostgres = "bench-backend-postgres"
)

// dbMetrics are the csrd_db_* counters read per window.
var dbMetrics = []string{"csrd_db_commits_total", "csrd_db_writes_total", "csrd_db_write_wait_seconds_total"}

// backendTally adds up one side's counters over its windows.
type backendTally struct {
	ops                                          int
	commits, writes, wait, busy, xact, serverCPU float64
	err                                          error
}

func (t *backendTally) side(m Measure) *BackendSide {
	s := &BackendSide{CSRD: &m}
	if t.ops > 0 {
		s.CommitsPerGenerate = t.commits / float64(t.ops)
		s.WritesPerGenerate = t.writes / float64(t.ops)
		s.XactPerGenerate = t.xact / float64(t.ops)
		s.ServerCPUPerGenerate = t.serverCPU / float64(t.ops)
	}
	if t.busy > 0 {
		s.DBShare = t.wait / t.busy
	}
	return s
}

// runBackends measures the two csrds. A machine without PostgreSQL's
// server binaries gets a row that says so.
func runBackends(ctx context.Context, base serverConfig, o Options) (_ *Backends, err error) {
	out := &Backends{C: o.BackendC}
	pg, err := fixture.NewPostgres(fixture.PostgresOptions{Durable: true})
	if err != nil {
		out.Unsupported = "no PostgreSQL server: " + firstLine(err.Error())
		return out, nil
	}
	defer pg.Close()
	dsn, err := pg.NewDB("csrd_bench")
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, err
	}
	stat, err := sql.Open("pgx", pg.DSNWithPassword(strings.TrimPrefix(u.Path, "/")))
	if err != nil {
		return nil, err
	}
	defer stat.Close()

	lite := base
	lite.labels, lite.name = []string{backendSQLite}, "csrd-backend-sqlite"
	lite.database = filepath.Join(base.dir, lite.name+".db")
	lite.healthInterval = sideBySideHealthInterval
	post := lite
	post.labels, post.name, post.database, post.passwordFile = []string{backendPostgres}, "csrd-backend-postgres", dsn, pg.PasswordFile

	a, _ := lookupAlg("P-256")
	var tallies [2]backendTally
	var sides []func(durations) (Measure, error)
	for i, cfg := range []serverConfig{lite, post} {
		srv, startErr := startServer(ctx, cfg)
		if startErr != nil {
			return nil, startErr
		}
		defer srv.stopAfter(&err) // runBackends' result, reported as it returns
		cl := srv.client(o.BackendC)
		defer cl.CloseIdle()
		var server *pgServer
		if i == 1 {
			server = &pgServer{pid: pg.PID(), stat: stat}
		}
		t := &tallies[i]
		sides = append(sides, func(d durations) (Measure, error) { return runBackendTurn(ctx, cl, srv, a, o.BackendC, d, t, server) })
	}
	turns, err := rotate(o.rounds(a), o.durations(a), sides)
	if err != nil {
		return nil, err
	}
	for _, t := range tallies {
		if t.err != nil {
			return nil, t.err
		}
	}
	out.SQLite, out.Postgres = tallies[0].side(combine(turns[0])), tallies[1].side(combine(turns[1]))
	out.Ratio, out.RoundRatios = ratios(turns[0], turns[1])
	return out, nil
}

// pgServer is what the benchmark reads of the PostgreSQL server beside
// csrd's metrics: its committed transactions and its CPU.
type pgServer struct {
	pid  int
	stat *sql.DB
}

// read returns the server's committed transactions and CPU seconds so far.
func (p *pgServer) read(ctx context.Context) (xact, cpu float64, err error) {
	if xact, err = xactCommits(ctx, p.stat); err != nil {
		return 0, 0, err
	}
	cpu, err = loadgen.TreeCPUSeconds(p.pid)
	return xact, cpu, err
}

// runBackendTurn is runHTTP with csrd's database counters (and the
// PostgreSQL server's, when server is set) read at the window's start and
// end.
func runBackendTurn(ctx context.Context, cl *loadgen.Client, srv *server, a alg, c int, d durations, t *backendTally,
	server *pgServer) (Measure, error) {
	var before []float64
	var x0, cpu0 float64
	read := func() ([]float64, float64, float64, error) {
		v, err := cl.Metrics(ctx, dbMetrics...)
		if err != nil || server == nil {
			return v, 0, 0, err
		}
		x, cpu, err := server.read(ctx)
		return v, x, cpu, err
	}
	m, err := runHTTPMarked(ctx, cl, srv, a, c, d, func(start bool) {
		v, x, cpu, err := read()
		switch {
		case err != nil:
			t.err = fmt.Errorf("bench: backends: %w", err)
		case start:
			before, x0, cpu0 = v, x, cpu
		case before != nil:
			t.commits += v[0] - before[0]
			t.writes += v[1] - before[1]
			t.wait += v[2] - before[2]
			t.xact += x - x0
			t.serverCPU += cpu - cpu0
		}
	})
	t.ops += m.Ops
	t.busy += float64(c) * m.Seconds
	return m, err
}

// xactCommits is the database's committed transactions so far, as
// PostgreSQL's statistics show them now.
func xactCommits(ctx context.Context, db *sql.DB) (float64, error) {
	if _, err := db.ExecContext(ctx, `SELECT pg_stat_clear_snapshot()`); err != nil {
		return 0, err
	}
	var n float64
	err := db.QueryRowContext(ctx, `SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&n)
	return n, err
}
