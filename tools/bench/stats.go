package bench

import (
	"runtime"
	"time"

	"github.com/csrd/csrd/tools/loadgen"
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
	// GivenBackPerSecond is csrd's side's throughput with its client's CPU
	// given back (givenBack); the ratios of a report compare this figure.
	GivenBackPerSecond float64 `json:"given_back_per_second,omitempty"`
	PeakRSSMiB         float64 `json:"peak_rss_mib,omitempty"`

	latencies []time.Duration // kept for combine
}

// measure is what a closed loop's window says of one side.
func measure(w loadgen.Window) Measure {
	m := Measure{Ops: w.Ops, Errors: w.Errors, Seconds: w.End.Sub(w.Start).Seconds()}
	if w.FirstErr != nil {
		m.FirstError = w.FirstErr.Error()
	}
	if m.Seconds > 0 {
		m.PerSecond = float64(w.Ops) / m.Seconds
	}
	m.latencies = w.Latencies
	fillLatency(&m, append([]time.Duration{}, w.Latencies...))
	return m
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
	out.setGivenBack()
	fillLatency(&out, lat)
	return out
}

// givenBack is m's throughput with its client's CPU given back: the ops
// over the window less the client's CPU seconds spread over the machine's
// cores. The benchmark's HTTP client runs on the cores csrd uses, and the
// raw loop has no client; where the cores are the limit, the client's
// share of them is time csrd's side lost, which a client on another host
// would not take. Where each request waits for its client's work in turn
// (C=1), the loss is up to NumCPU times that, so the figure errs towards
// the measured one. Without client CPU (the raw loop) it is PerSecond.
func (m Measure) givenBack() float64 {
	s := m.Seconds - m.ClientCPUPerOp*float64(m.Ops)/float64(runtime.NumCPU())
	if m.ClientCPUPerOp <= 0 || s <= 0 {
		return m.PerSecond
	}
	return float64(m.Ops) / s
}

// setGivenBack records givenBack in the report where it differs from PerSecond.
func (m *Measure) setGivenBack() {
	if m.ClientCPUPerOp > 0 {
		m.GivenBackPerSecond = m.givenBack()
	}
}

// fillLatency sets m's percentiles from lat (sorted in place).
func fillLatency(m *Measure, lat []time.Duration) {
	l := loadgen.Percentiles(lat)
	m.P50ms, m.P99ms = ms(l.P50), ms(l.P99)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
