package bench

import (
	"cmp"
	"fmt"
	"strings"
)

// Target is one of issue 7's targets, evaluated on a report.
type Target struct {
	Name   string `json:"name"`
	Met    bool   `json:"met"`
	Detail string `json:"detail"`
}

// Targets evaluates the targets; a target with no figures (its part
// of the run was skipped or not supported) is reported as not met.
func (r *Report) Targets() []Target {
	var ts []Target
	add := func(name string, met bool, format string, args ...any) {
		ts = append(ts, Target{Name: name, Met: met, Detail: fmt.Sprintf(format, args...)})
	}
	for _, want := range []struct {
		alg string
		min float64
	}{{"P-256", 0.90}, {"Ed25519", 0.90}, {"RSA-2048", 0.95}} {
		var misses []string
		n := 0
		for _, c := range r.Cells {
			if c.Alg != want.alg || c.Phase != "empty" {
				continue
			}
			if c.Unsupported != "" {
				misses = append(misses, "not supported")
				continue
			}
			n++
			if c.Ratio < want.min {
				misses = append(misses, fmt.Sprintf("C=%d %s", c.C, below(c.Ratio, want.min)))
			}
		}
		add(fmt.Sprintf("(b)/(a) ≥ %.2f for %s at every C", want.min, want.alg), n > 0 && len(misses) == 0,
			"%d cells; below target: %s%s", n, orNone(misses), r.noiseNote(len(misses) > 0, want.alg))
	}

	// The raw loop's own filled/empty ratio in the same cells says how much
	// of a fall is the token's (SoftHSM's file store with tens of
	// thousands of object files) rather than csrd's.
	empty, filled := map[int]*Cell{}, map[int]*Cell{}
	for i := range r.Cells {
		c := &r.Cells[i]
		if c.Alg == "P-256" && c.CSRD != nil && c.Raw != nil {
			if c.Phase == "empty" {
				empty[c.C] = c
			} else {
				filled[c.C] = c
			}
		}
	}
	var fr []string
	fmet := len(filled) > 0
	for c, f := range filled {
		if e := empty[c]; e != nil && e.CSRD.PerSecond > 0 && e.Raw.PerSecond > 0 {
			v := f.CSRD.givenBack() / e.CSRD.givenBack()
			fr = append(fr, fmt.Sprintf("C=%d %.2f (raw loop %.2f)", c, v, f.Raw.PerSecond/e.Raw.PerSecond))
			fmet = fmet && v >= 0.90
		}
	}
	add("P-256 with 10,000 stored keys ≥ 0.90 × empty token (csrd)", fmet, "%s", orNone(sortStrings(fr)))

	var pr []string
	pmet := len(r.Pool) > 1
	for _, p := range r.Pool[min(1, len(r.Pool)):] {
		if p.CSRD == nil {
			pmet = false
			pr = append(pr, fmt.Sprintf("%d tokens: not supported", p.Tokens))
			continue
		}
		pr = append(pr, fmt.Sprintf("%d tokens %s (rounds %s)", p.Tokens, below(p.VsOne, 0.95), roundSpread(p.RoundsVsOne)))
		if p.Tokens == 2 {
			pmet = pmet && p.VsOne >= 0.95
		}
	}
	add("2 tokens ≥ 0.95 × 1 token at the same C", pmet, "%s", orNone(pr))
	if f := r.Failover; f != nil && f.CSRD != nil {
		add("zero failed Generate requests with one of two tokens unusable mid-run", f.CSRD.Errors == 0,
			"%d errors in %d requests", f.CSRD.Errors, f.CSRD.Ops)
	} else {
		add("zero failed Generate requests with one of two tokens unusable mid-run", false, "not measured")
	}

	maxRSS, errs := 0.0, 0
	var p99s []string
	p99met := true
	for _, c := range r.Cells {
		if c.CSRD == nil {
			continue
		}
		errs += c.CSRD.Errors + c.Raw.Errors
		if c.C == 64 {
			maxRSS = max(maxRSS, c.CSRD.PeakRSSMiB)
		}
		if c.C <= 16 && c.CSRD.P50ms > 0 && c.CSRD.P99ms > 3*c.CSRD.P50ms {
			p99met = false
			// The token's own spread, from the raw loop in the same cell,
			// is what csrd's cannot be expected to beat.
			own := ""
			if c.Raw != nil && c.Raw.P50ms > 0 {
				own = fmt.Sprintf(" (raw loop %.1f×)", c.Raw.P99ms/c.Raw.P50ms)
			}
			p99s = append(p99s, fmt.Sprintf("%s %s C=%d %.1f×%s", c.Phase, c.Alg, c.C, c.CSRD.P99ms/c.CSRD.P50ms, own))
		}
	}
	// The memory run is csrd alone on a fresh token; the side-by-side
	// cells' peaks include SoftHSM's copy of every key made before them.
	if m := r.Memory; m != nil && m.CSRD != nil {
		raw := ""
		if m.Raw != nil {
			raw = fmt.Sprintf("; the raw loop alone making as many pairs at C=%d peaks at %.1f MiB", m.Raw.C, m.Raw.PeakMiB)
		}
		add(fmt.Sprintf("csrd peak RSS < 64 MiB at C = %d", m.C), m.CSRD.PeakRSSMiB > 0 && m.CSRD.PeakRSSMiB < 64,
			"fresh token: %.1f MiB (idle %.1f MiB, %d key pairs made; Go runtime mapped at most %.1f MiB of it; SoftHSM keeps %.1f KiB per key pair in the process%s); side-by-side C=64 cells, on a token already holding the earlier cells' keys: max %.1f MiB",
			m.CSRD.PeakRSSMiB, m.IdleFreshMiB, m.KeyPairs, m.GoSysMiB, m.PerKeyPairKiB, raw, maxRSS)
	} else {
		add("csrd peak RSS < 64 MiB at C = 64", maxRSS > 0 && maxRSS < 64, "max %.1f MiB (no memory run)", maxRSS)
	}
	add("p99 ≤ 3 × p50 at C ≤ 16 (csrd)", p99met, "over: %s", orNone(p99s))
	add("zero errors", errs == 0, "%d errors in side-by-side cells", errs)
	return ts
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

func sortStrings(s []string) []string {
	out := append([]string{}, s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}
