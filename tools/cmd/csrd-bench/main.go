// Command csrd-bench measures csrd against the raw PKCS#11 limit of a fresh
// SoftHSM token, side by side, and writes BENCHMARKS.md and a JSON report.
// `make bench` runs it with the full settings (about half an hour on two
// cores); the smoke test of tools/bench runs it tiny. main only wires.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/csrd/csrd/tools/bench"
)

func main() {
	// The memory run starts this binary again as its raw-loop child.
	if child, err := bench.RunRawMemoryChild(); child {
		if err != nil {
			fmt.Fprintln(os.Stderr, "csrd-bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "csrd-bench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("csrd-bench", flag.ContinueOnError)
	csrd := fs.String("csrd", "bin/csrd", "csrd binary to measure")
	dir := fs.String("dir", "", "work directory for tokens, databases and logs (default: a new temp dir, removed afterwards)")
	dbDir := fs.String("db-dir", "", "directory for csrd's database (default: the work directory, on the token's file system)")
	algs := fs.String("algs", "P-256,Ed25519,RSA-2048", "key types")
	conc := fs.String("c", "1,2,4,16,64", "concurrency levels")
	warmup := fs.Duration("warmup", time.Second, "warm-up before each measurement window")
	duration := fs.Duration("duration", 12*time.Second, "measurement window per cell and side")
	slow := fs.Int("slow-factor", 3, "RSA windows are this many times longer")
	fill := fs.Int("fill", 10000, "repeat P-256 once the token holds this many csrd keys (0 skips)")
	fillWorkers := fs.Int("fill-workers", 2, "sessions used to fill the token")
	pool := fs.String("pool", "1,2,4", "token counts for the pool comparison (empty skips)")
	poolC := fs.Int("pool-c", 16, "concurrency of the pool comparison and the failover run")
	failover := fs.Bool("failover", true, "run the two-token failover measurement")
	memC := fs.Int("memory-c", 64, "concurrency of csrd's memory run on a fresh token (0 skips)")
	noise := fs.String("noise-c", "4,16", "concurrency levels of the raw-vs-raw noise cells (empty skips)")
	noiseRSA := fs.String("noise-rsa-c", "1", "concurrency levels of the RSA-2048 raw-vs-raw noise cells, one long turn per side (empty skips)")
	rounds := fs.Int("rounds", 12, "turns each side takes per cell, alternating (RSA: always 1)")
	sessions := fs.Int("max-sessions", 0, "csrd hsm.max_sessions (0: csrd's default)")
	token := fs.String("token", "softhsm", "token of the side-by-side cells: softhsm, p11kit (SoftHSM through p11-kit remoting) or tpm (swtpm, tpm2-pkcs11); the fill, pool, failover, memory and backend runs are SoftHSM's")
	tokenCells := fs.String("token-cells", "p11kit,tpm", "other tokens (p11kit, tpm) whose short side-by-side cells follow the run, each on a fresh token (empty skips)")
	tokenAlgs := fs.String("token-algs", "P-256,RSA-2048", "key types of the token cells")
	tokenC := fs.String("token-c", "1,4", "concurrency levels of the token cells")
	tokenDuration := fs.Duration("token-duration", 6*time.Second, "measurement window per token cell and side (RSA ×slow-factor)")
	tokenOnly := fs.Bool("token-cells-only", false, "run only the token cells (no SoftHSM phases)")
	backendC := fs.Int("backends-c", 8, "concurrency of csrd on PostgreSQL against csrd on SQLite (0 skips)")
	backendsOnly := fs.Bool("backends-only", false, "run only the PostgreSQL-against-SQLite comparison")
	targets := fs.String("targets", "", "JSON file of the targets the report holds csrd to (default: the built-in tools/bench/targets.json)")
	md := fs.String("md", "BENCHMARKS.md", "Markdown report to update (empty: none)")
	js := fs.String("json", "bin/bench.json", "JSON report (empty: none; - for stdout)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cs, err := ints(*conc)
	if err != nil {
		return fmt.Errorf("-c: %w", err)
	}
	pools, err := ints(*pool)
	if err != nil {
		return fmt.Errorf("-pool: %w", err)
	}
	noiseC, err := ints(*noise)
	if err != nil {
		return fmt.Errorf("-noise-c: %w", err)
	}
	noiseSlowC, err := ints(*noiseRSA)
	if err != nil {
		return fmt.Errorf("-noise-rsa-c: %w", err)
	}
	tokCs, err := ints(*tokenC)
	if err != nil {
		return fmt.Errorf("-token-c: %w", err)
	}
	goals, err := bench.LoadGoals(*targets)
	if err != nil {
		return err
	}
	work := *dir
	if work == "" {
		if work, err = os.MkdirTemp("", "csrd-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	self, err := os.Executable()
	if err != nil {
		return err
	}
	rep, err := bench.Run(ctx, bench.Options{
		CSRD: *csrd, Dir: work, DBDir: *dbDir, Algs: split(*algs), Concurrency: cs,
		Warmup: *warmup, Duration: *duration, SlowFactor: *slow,
		FillKeys: *fill, FillWorkers: *fillWorkers, PoolTokens: pools, PoolC: *poolC,
		Failover: *failover, MemoryC: *memC, BenchBinary: self, MaxSessions: *sessions, Rounds: *rounds, NoiseC: noiseC, NoiseSlowC: noiseSlowC, Goals: goals, Token: *token, Progress: os.Stderr,
		TokenCells: split(*tokenCells), TokenAlgs: split(*tokenAlgs), TokenC: tokCs, TokenDuration: *tokenDuration, TokenCellsOnly: *tokenOnly,
		BackendC: *backendC, BackendsOnly: *backendsOnly,
	})
	if err != nil {
		return err
	}
	if *md != "" {
		if err := rep.WriteMarkdown(*md); err != nil {
			return err
		}
	}
	if *js != "" {
		b, err := rep.JSON()
		if err != nil {
			return err
		}
		if *js == "-" {
			_, err = os.Stdout.Write(append(b, '\n'))
			return err
		}
		return os.WriteFile(*js, append(b, '\n'), 0o644)
	}
	return nil
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range split(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}
