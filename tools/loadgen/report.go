package loadgen

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// WriteReport prints r for people: totals, the status histogram, every
// distinct error, latency percentiles and memory.
func (r *Result) WriteReport(w io.Writer) {
	rate := float64(r.Requests) / r.Duration.Seconds()
	fmt.Fprintf(w, "clients %d, %v: %d requests (%.1f/s), %d keys generated, %d deleted again, %d unexpected\n",
		r.Clients, r.Duration.Round(time.Millisecond), r.Requests, rate, len(r.Accepted), r.Deleted, r.Unexpected)
	statuses := make([]int, 0, len(r.Status))
	for st := range r.Status {
		statuses = append(statuses, st)
	}
	slices.Sort(statuses)
	fmt.Fprint(w, "status:")
	for _, st := range statuses {
		name := fmt.Sprint(st)
		if st == 0 {
			name = "transport-error"
		}
		fmt.Fprintf(w, " %s=%d", name, r.Status[st])
	}
	fmt.Fprintln(w)
	errs := make([]string, 0, len(r.Errors))
	for e := range r.Errors {
		errs = append(errs, e)
	}
	slices.Sort(errs)
	for _, e := range errs {
		fmt.Fprintf(w, "error x%d: %s\n", r.Errors[e], e)
	}
	l := r.Latency
	fmt.Fprintf(w, "latency: p50 %v, p90 %v, p99 %v, max %v, mean %v\n",
		l.P50.Round(time.Millisecond), l.P90.Round(time.Millisecond), l.P99.Round(time.Millisecond),
		l.Max.Round(time.Millisecond), l.Mean.Round(time.Millisecond))
	if r.RSSStart > 0 {
		fmt.Fprintf(w, "csrd RSS: start %.1f MiB, end %.1f MiB, max %.1f MiB\n", mib(r.RSSStart), mib(r.RSSEnd), mib(r.RSSMax))
		if r.HeapStart > 0 && r.HeapEnd > 0 {
			// The rest of the RSS is C: SQLite's page cache and, mostly,
			// the PKCS#11 module's own copy of the token's objects.
			fmt.Fprintf(w, "csrd Go heap in use: start %.1f MiB, end %.1f MiB\n", mib(r.HeapStart), mib(r.HeapEnd))
		}
		if len(r.RSSSamples) >= 10 {
			fmt.Fprint(w, "csrd RSS every 10 s (MiB):")
			for i := 9; i < len(r.RSSSamples); i += 10 {
				fmt.Fprintf(w, " %.1f", mib(r.RSSSamples[i]))
			}
			fmt.Fprintln(w)
		}
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
