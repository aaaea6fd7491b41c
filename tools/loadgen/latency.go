package loadgen

import (
	"slices"
	"time"
)

// Latencies are percentiles of request latency.
type Latencies struct {
	P50, P90, P99, Max, Mean time.Duration
}

// Percentiles sorts l in place and returns its percentiles, maximum and
// mean. The q-percentile is the smallest latency with more than q of all
// latencies at or below it (index ⌊q·n⌋ of the sorted list): never below
// the nearest-rank figure, so a tail is not flattered.
func Percentiles(l []time.Duration) Latencies {
	if len(l) == 0 {
		return Latencies{}
	}
	slices.Sort(l)
	at := func(q float64) time.Duration { return l[min(len(l)-1, int(q*float64(len(l))))] }
	var sum time.Duration
	for _, d := range l {
		sum += d
	}
	return Latencies{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: l[len(l)-1], Mean: sum / time.Duration(len(l))}
}
