package bench

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Target is one goal of the targets file, evaluated on a report.
type Target struct {
	Name   string `json:"name"`
	Met    bool   `json:"met"`
	Detail string `json:"detail"`
}

// Targets evaluates the report's goals (Report.Goals, else the built-in
// targets.json); a target with no figures (its part of the run was skipped
// or not supported) is reported as not met.
func (r *Report) Targets() []Target {
	g := r.Goals
	if g == nil {
		var err error
		if g, err = LoadGoals(""); err != nil {
			return []Target{{Name: "targets", Detail: err.Error()}}
		}
	}
	ts := r.ratioTargets(g)
	ts = append(ts, r.filledTarget(g), r.poolTarget(g), r.failoverTarget(g), r.memoryTarget(g), r.p99Target(g), r.errorsTarget(g))
	if g.Backends.Min > 0 {
		ts = append(ts, r.backendsTarget(g))
	}
	return ts
}

func target(name string, met bool, format string, args ...any) Target {
	return Target{Name: name, Met: met, Detail: fmt.Sprintf(format, args...)}
}

// ratioTargets: (b)/(a) of every empty-token cell of each key type.
func (r *Report) ratioTargets(g *Goals) []Target {
	var ts []Target
	for _, want := range g.Ratio {
		var misses []string
		n := 0
		for _, c := range r.Cells {
			if c.Alg != want.Alg || c.Phase != "empty" {
				continue
			}
			if c.Unsupported != "" {
				misses = append(misses, "not supported")
				continue
			}
			n++
			if c.Ratio < want.Min {
				misses = append(misses, fmt.Sprintf("C=%d %s", c.C, below(c.Ratio, want.Min)))
			}
		}
		ts = append(ts, target(fmt.Sprintf("(b)/(a) ≥ %.2f for %s at every C", want.Min, want.Alg), n > 0 && len(misses) == 0,
			"%d cells; below target: %s%s", n, orNone(misses), r.noiseNote(len(misses) > 0, want.Alg)))
	}
	return ts
}

// filledTarget: csrd on the filled token against the empty one. The raw
// loop's own filled/empty ratio in the same cells says how much of a fall
// is the token's (SoftHSM's file store with tens of thousands of object
// files) rather than csrd's.
func (r *Report) filledTarget(g *Goals) Target {
	empty, filled := map[int]*Cell{}, map[int]*Cell{}
	for i := range r.Cells {
		c := &r.Cells[i]
		if c.Alg == g.Filled.Alg && c.CSRD != nil && c.Raw != nil {
			if c.Phase == "empty" {
				empty[c.C] = c
			} else {
				filled[c.C] = c
			}
		}
	}
	var fr []string
	met := len(filled) > 0
	for c, f := range filled {
		if e := empty[c]; e != nil && e.CSRD.PerSecond > 0 && e.Raw.PerSecond > 0 {
			v := f.CSRD.givenBack() / e.CSRD.givenBack()
			fr = append(fr, fmt.Sprintf("C=%d %.2f (raw loop %.2f)", c, v, f.Raw.PerSecond/e.Raw.PerSecond))
			met = met && v >= g.Filled.Min
		}
	}
	slices.Sort(fr)
	name := fmt.Sprintf("%s with %s stored keys ≥ %.2f × empty token (csrd)", g.Filled.Alg, thousands(r.Options.FillKeys), g.Filled.Min)
	return target(name, met, "%s", orNone(fr))
}

// poolTarget: csrd over g.Pool.Tokens tokens against the first row's.
func (r *Report) poolTarget(g *Goals) Target {
	var pr []string
	met := len(r.Pool) > 1
	for _, p := range r.Pool[min(1, len(r.Pool)):] {
		if p.CSRD == nil {
			met = false
			pr = append(pr, fmt.Sprintf("%d tokens: not supported", p.Tokens))
			continue
		}
		pr = append(pr, fmt.Sprintf("%d tokens %s (rounds %s)", p.Tokens, below(p.VsOne, g.Pool.Min), roundSpread(p.RoundsVsOne)))
		if p.Tokens == g.Pool.Tokens {
			met = met && p.VsOne >= g.Pool.Min
		}
	}
	return target(fmt.Sprintf("%d tokens ≥ %.2f × 1 token at the same C", g.Pool.Tokens, g.Pool.Min), met, "%s", orNone(pr))
}

// backendsTarget: csrd on PostgreSQL against csrd on SQLite.
func (r *Report) backendsTarget(g *Goals) Target {
	name := fmt.Sprintf("csrd on PostgreSQL ≥ %.2f × csrd on SQLite at C=%d", g.Backends.Min, g.Backends.C)
	k := r.Backends
	switch {
	case k == nil:
		return target(name, false, "not measured")
	case k.Unsupported != "":
		return target(name, false, "not measured: %s", k.Unsupported)
	case k.C != g.Backends.C:
		return target(name, false, "measured at C=%d", k.C)
	}
	errs := k.SQLite.CSRD.Errors + k.Postgres.CSRD.Errors
	return target(name, k.Ratio >= g.Backends.Min && errs == 0, "%s (rounds %s); commits per Generate %.2f on SQLite, %.2f on PostgreSQL; %d errors",
		below(k.Ratio, g.Backends.Min), roundSpread(k.RoundRatios), k.SQLite.CommitsPerGenerate, k.Postgres.CommitsPerGenerate, errs)
}

// failoverTarget: failed requests while one of two tokens is unusable.
func (r *Report) failoverTarget(g *Goals) Target {
	name := atMost(g.Failover.MaxErrors) + " failed Generate requests with one of two tokens unusable mid-run"
	f := r.Failover
	if f == nil || f.CSRD == nil {
		return target(name, false, "not measured")
	}
	return target(name, f.CSRD.Errors <= g.Failover.MaxErrors, "%d errors in %d requests", f.CSRD.Errors, f.CSRD.Ops)
}

// memoryTarget: csrd's peak RSS. The memory run is csrd alone on a fresh
// token; the side-by-side cells' peaks include SoftHSM's copy of every key
// made before them, so they are only the fallback.
func (r *Report) memoryTarget(g *Goals) Target {
	want := g.PeakRSS
	maxRSS := 0.0
	for _, c := range r.Cells {
		if c.CSRD != nil && c.C == want.C {
			maxRSS = max(maxRSS, c.CSRD.PeakRSSMiB)
		}
	}
	m := r.Memory
	if m == nil || m.CSRD == nil {
		return target(fmt.Sprintf("csrd peak RSS < %g MiB at C = %d", want.BelowMiB, want.C), maxRSS > 0 && maxRSS < want.BelowMiB,
			"max %.1f MiB (no memory run)", maxRSS)
	}
	raw := ""
	if m.Raw != nil {
		raw = fmt.Sprintf("; the raw loop alone making as many pairs at C=%d peaks at %.1f MiB", m.Raw.C, m.Raw.PeakMiB)
	}
	return target(fmt.Sprintf("csrd peak RSS < %g MiB at C = %d", want.BelowMiB, m.C), m.CSRD.PeakRSSMiB > 0 && m.CSRD.PeakRSSMiB < want.BelowMiB,
		"fresh token: %.1f MiB (idle %.1f MiB, %d key pairs made; Go runtime mapped at most %.1f MiB of it; SoftHSM keeps %.1f KiB per key pair in the process%s); side-by-side C=%d cells, on a token already holding the earlier cells' keys: max %.1f MiB",
		m.CSRD.PeakRSSMiB, m.IdleFreshMiB, m.KeyPairs, m.GoSysMiB, m.PerKeyPairKiB, raw, want.C, maxRSS)
}

// p99Target: csrd's tail at low concurrency, next to the raw loop's own
// spread in the same cell, which csrd's cannot be expected to beat.
func (r *Report) p99Target(g *Goals) Target {
	want := g.P99
	var over []string
	for _, c := range r.Cells {
		if c.CSRD == nil || c.C > want.MaxC || c.CSRD.P50ms <= 0 || c.CSRD.P99ms <= want.MaxTimesP50*c.CSRD.P50ms {
			continue
		}
		own := ""
		if c.Raw != nil && c.Raw.P50ms > 0 {
			own = fmt.Sprintf(" (raw loop %.1f×)", c.Raw.P99ms/c.Raw.P50ms)
		}
		over = append(over, fmt.Sprintf("%s %s C=%d %.1f×%s", c.Phase, c.Alg, c.C, c.CSRD.P99ms/c.CSRD.P50ms, own))
	}
	return target(fmt.Sprintf("p99 ≤ %g × p50 at C ≤ %d (csrd)", want.MaxTimesP50, want.MaxC), len(over) == 0, "over: %s", orNone(over))
}

// errorsTarget: failed operations on either side of the side-by-side cells.
func (r *Report) errorsTarget(g *Goals) Target {
	errs := 0
	for _, c := range r.Cells {
		if c.CSRD != nil {
			errs += c.CSRD.Errors + c.Raw.Errors
		}
	}
	return target(atMost(g.Errors.Max)+" errors", errs <= g.Errors.Max, "%d errors in side-by-side cells", errs)
}

// noiseNote puts the raw loop's ratio against itself next to a missed
// ratio target: a miss smaller than that distance from 1 is not resolved by
// the run. The target is judged on the figures all the same. Only the
// noise cells of the key type that calibrates alg count (alg.calibratedBy).
func (r *Report) noiseNote(missed bool, alg string) string {
	if !missed {
		return ""
	}
	a, err := lookupAlg(alg)
	if err != nil {
		return ""
	}
	want := a.calibratedBy()
	var ns []string
	for _, n := range r.Noise {
		if cmp.Or(n.Alg, "P-256") != want {
			continue
		}
		rounds := ""
		if len(n.RoundRatios) > 1 {
			rounds = fmt.Sprintf(" (rounds %s)", roundSpread(n.RoundRatios))
		}
		ns = append(ns, fmt.Sprintf("C=%d %.2f%s", n.C, n.Ratio, rounds))
	}
	if len(ns) == 0 {
		return ""
	}
	return fmt.Sprintf("; the raw loop against itself (%s) in this run: %s", want, strings.Join(ns, ", "))
}

// below prints a ratio that missed target with two decimals, or three when
// two would round it up to the target itself ("0.947", not a puzzling
// "0.95 < 0.95").
func below(ratio, target float64) string {
	if s := fmt.Sprintf("%.2f", ratio); s != fmt.Sprintf("%.2f", target) {
		return s
	}
	return fmt.Sprintf("%.3f", ratio)
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// atMost says "at most n", or "zero".
func atMost(n int) string {
	if n == 0 {
		return "zero"
	}
	return fmt.Sprintf("at most %d", n)
}

// thousands prints n with thousands separators ("10,000").
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
