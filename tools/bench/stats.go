package bench

import (
	"slices"
	"time"
)

// Measure is one side (raw loop or csrd) of one cell.
type Measure struct {
	Ops        int     `json:"ops"`    // operations completed inside the window
	Errors     int     `json:"errors"` // failed operations, anywhere in the cell
	FirstError string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`    // measurement window
	PerSecond  float64 `json:"per_second"` // Ops / Seconds
	P50ms      float64 `json:"p50_ms"`     // latency of the operations in the window
	P99ms      float64 `json:"p99_ms"`
	CPUPerOp   float64 `json:"cpu_s_per_op"` // CPU seconds (user+system) of the measured process per op
	// ClientCPUPerOp is, for csrd's side, the benchmark process's own CPU
	// per CSR: its HTTP client, on the same cores. The raw loop has no such
	// cost, so where the cores are the limit it is part of the gap.
	ClientCPUPerOp float64 `json:"client_cpu_s_per_op,omitempty"`
	PeakRSSMiB     float64 `json:"peak_rss_mib,omitempty"`

	latencies []time.Duration // kept for combine
}

// percentile returns the q-quantile (0..1) of sorted by nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// combine merges the measures of several turns: ops, errors and time add
// up, CPU per op is weighted by ops, percentiles are taken over all
// latencies, peak RSS is the highest.
func combine(ms []Measure) Measure {
	var out Measure
	var lat []time.Duration
	var cpu, client float64
	for _, m := range ms {
		out.Ops += m.Ops
		out.Errors += m.Errors
		out.Seconds += m.Seconds
		cpu += m.CPUPerOp * float64(m.Ops)
		client += m.ClientCPUPerOp * float64(m.Ops)
		out.PeakRSSMiB = max(out.PeakRSSMiB, m.PeakRSSMiB)
		if out.FirstError == "" {
			out.FirstError = m.FirstError
		}
		lat = append(lat, m.latencies...)
	}
	if out.Seconds > 0 {
		out.PerSecond = float64(out.Ops) / out.Seconds
	}
	out.CPUPerOp = perOp(cpu, out.Ops)
	out.ClientCPUPerOp = perOp(client, out.Ops)
	fillLatency(&out, lat)
	return out
}

func fillLatency(m *Measure, lat []time.Duration) {
	slices.Sort(lat)
	m.P50ms = ms(percentile(lat, 0.50))
	m.P99ms = ms(percentile(lat, 0.99))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
