package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/tools/bench"
)

// TestSmoke runs the whole benchmark, tiny, against the real csrd binary: it
// proves the program works end to end and emits a valid report. It asserts
// no timings (a shared CI machine cannot promise any), only that every part
// ran, that nothing failed, and that the JSON and Markdown are well formed.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds csrd and runs every phase of the benchmark, tiny (about a minute); not under -short")
	}
	dir := t.TempDir()
	csrd, err := fixture.CSRD(dir) // make test's one build, or built here once
	if err != nil {
		t.Fatal(err)
	}
	// The benchmark's own binary, for the memory run's raw-loop child.
	benchBin := filepath.Join(dir, "csrd-bench")
	if out, err := exec.Command("go", "build", "-o", benchBin, "github.com/csrd/csrd/tools/cmd/csrd-bench").CombinedOutput(); err != nil {
		t.Fatalf("go build csrd-bench: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	rep, err := bench.Run(ctx, bench.Options{
		CSRD: csrd, Dir: filepath.Join(dir, "work"),
		Algs: []string{"P-256", "Ed25519"}, Concurrency: []int{1, 3},
		Warmup: 20 * time.Millisecond, Duration: 200 * time.Millisecond, Rounds: 2, SlowFactor: 1,
		FillKeys: 12, FillWorkers: 2, PoolTokens: []int{1, 2}, PoolC: 2, Failover: true, MemoryC: 2, BenchBinary: benchBin,
		MaxSessions: 4, NoiseC: []int{2}, Progress: &progress,
	})
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}

	raw, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back bench.Report
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatalf("report is not valid JSON: %v", err)
	}
	phases := map[string]int{}
	clientCPU := 0.0 // per cell it may round to no clock tick in these short windows
	for _, c := range back.Cells {
		if c.CSRD != nil {
			clientCPU += c.CSRD.ClientCPUPerOp
		}
		if c.Unsupported != "" {
			continue
		}
		phases[c.Phase]++
		t.Run(c.Phase+"/"+c.Alg+"/C="+itoa(c.C), func(t *testing.T) {
			if c.Raw == nil || c.CSRD == nil {
				t.Fatalf("cell without both sides: %+v", c)
			}
			if c.Raw.Errors != 0 || c.CSRD.Errors != 0 {
				t.Errorf("errors: raw %d (%s), csrd %d (%s)", c.Raw.Errors, c.Raw.FirstError, c.CSRD.Errors, c.CSRD.FirstError)
			}
			if c.Raw.Ops == 0 || c.CSRD.Ops == 0 || c.Ratio <= 0 {
				t.Errorf("nothing measured: raw %d ops, csrd %d ops, ratio %v", c.Raw.Ops, c.CSRD.Ops, c.Ratio)
			}
			if c.CSRD.PeakRSSMiB <= 0 {
				t.Errorf("csrd peak RSS not measured")
			}

		})
	}
	if clientCPU <= 0 {
		t.Errorf("the benchmark client's CPU per CSR was never measured")
	}
	if phases["empty"] != 4 || phases["filled"] != 2 {
		t.Errorf("measured cells per phase %v, want 4 empty (P-256 and Ed25519 at C=1,3) and 2 filled", phases)
	}
	if len(back.Noise) != 1 {
		t.Errorf("noise rows %d, want 1 (C=2)", len(back.Noise))
	}
	for _, n := range back.Noise {
		if n.A == nil || n.B == nil || n.A.Ops == 0 || n.B.Ops == 0 || n.A.Errors+n.B.Errors != 0 || n.Ratio <= 0 || len(n.RoundRatios) != 2 {
			t.Errorf("noise cell C=%d incomplete: %+v", n.C, n)
		}
	}
	if back.Fill == nil || back.Fill.Total != 12 {
		t.Errorf("fill = %+v, want the token brought to 12 keys", back.Fill)
	}
	if len(back.Pool) != 2 {
		t.Errorf("pool rows %d, want 2", len(back.Pool))
	} else if p := back.Pool[1]; p.CSRD == nil || p.CSRD.Ops == 0 || p.Raw == nil || p.Raw.Ops == 0 || p.VsOne <= 0 || len(p.RoundsVsOne) != 2 {
		// Both rows took a turn in each of the 2 rounds.
		t.Errorf("2-token pool row incomplete: %+v", p)
	}
	if back.Failover == nil {
		t.Errorf("no failover result")
	}
	if m := back.Memory; m == nil || m.CSRD == nil || m.CSRD.Ops == 0 || m.IdleFreshMiB <= 0 || m.CSRD.PeakRSSMiB < m.IdleFreshMiB ||
		m.KeyPairs < m.CSRD.Ops || m.IdleRestartedMiB <= 0 || m.GoHeapInuseMiB <= 0 || m.GoSysMiB < m.GoHeapInuseMiB || m.Threads < 2 {
		t.Errorf("memory run incomplete or inconsistent: %+v", m)
	} else if r := m.Raw; r == nil || r.KeyPairs != m.KeyPairs || r.Errors != 0 || r.IdleMiB <= 0 || r.PeakMiB < r.IdleMiB || r.Threads < 2 || r.PerSecond <= 0 {
		t.Errorf("memory run's raw-loop child missing or inconsistent: %+v", r)
	}
	// The side-by-side csrd checks its token once a day (why: the comment
	// on sideBySideHealthInterval); the failover run's keeps csrd's default,
	// since it watches a token fail and come back.
	if back.Options.HealthIntervalS != 24*3600 {
		t.Errorf("report's health interval %vs, want 86400", back.Options.HealthIntervalS)
	}
	for name, want := range map[string]bool{"csrd-main.yaml": true, "csrd-filled.yaml": true, "csrd-pool-1.yaml": true, "csrd-pool-2.yaml": true, "csrd-failover.yaml": false} {
		cfg, err := os.ReadFile(filepath.Join(dir, "work", name))
		if err != nil {
			t.Errorf("csrd config: %v", err)
			continue
		}
		if got := strings.Contains(string(cfg), "health_interval: 24h0m0s"); got != want {
			t.Errorf("%s sets a day's health interval: %v, want %v", name, got, want)
		}
	}
	if back.Machine.NProc < 1 || back.Machine.SoftHSM == "" {
		t.Errorf("machine facts missing: %+v", back.Machine)
	}

	md := filepath.Join(dir, "BENCHMARKS.md")
	if err := os.WriteFile(md, []byte("# kept\n\nanalysis above\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 { // rewriting replaces the generated part, keeps the rest
		if err := rep.WriteMarkdown(md); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(md)
	s := string(b)
	if !strings.HasPrefix(s, "# kept\n\nanalysis above\n") || strings.Count(s, "csrd-bench:begin") != 1 ||
		!strings.Contains(s, "| empty | P-256 | 1 |") || !strings.Contains(s, "### Targets") || !strings.Contains(s, "### Noise floor") || !strings.Contains(s, "### Memory") {
		t.Errorf("BENCHMARKS.md not as expected:\n%s", s)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestSmokeBackends runs the PostgreSQL-against-SQLite comparison alone,
// tiny: both csrds answered, their database counters were read, the
// report has its row and its target.
func TestSmokeBackends(t *testing.T) {
	if testing.Short() {
		t.Skip("builds csrd and starts PostgreSQL; not under -short")
	}
	dir := t.TempDir()
	csrd, err := fixture.CSRD(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	rep, err := bench.Run(ctx, bench.Options{
		CSRD: csrd, Dir: filepath.Join(dir, "work"), BackendC: 2, BackendsOnly: true,
		Warmup: 20 * time.Millisecond, Duration: 400 * time.Millisecond, Rounds: 2, MaxSessions: 4, Progress: &progress,
	})
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	k := rep.Backends
	if k == nil || k.Unsupported != "" {
		t.Fatalf("no backends row: %+v", k)
	}
	for name, s := range map[string]*bench.BackendSide{"sqlite": k.SQLite, "postgres": k.Postgres} {
		if s == nil || s.CSRD == nil || s.CSRD.Ops == 0 || s.CSRD.Errors != 0 {
			t.Fatalf("%s side: %+v", name, s)
		}
		// A Generate writes its record twice (begin, complete): at least
		// two writes and, under group commit, at most as many commits.
		if s.WritesPerGenerate < 1.5 || s.CommitsPerGenerate <= 0 || s.CommitsPerGenerate > s.WritesPerGenerate+0.5 ||
			s.DBShare <= 0 || s.DBShare >= 1 {
			t.Errorf("%s side's database figures: %+v", name, s)
		}
	}
	// XactPerGenerate is not checked: PostgreSQL flushes a busy session's
	// statistics at most once a second, longer than these windows.
	if k.Ratio <= 0 || len(k.RoundRatios) != 2 {
		t.Errorf("comparison incomplete: %+v", k)
	}
	md := rep.Markdown()
	if !strings.Contains(md, "### Database backends") || !strings.Contains(md, "csrd on PostgreSQL ≥ 0.90 × csrd on SQLite at C=8") {
		t.Errorf("Markdown without the backends section or its target:\n%s", md)
	}
}
