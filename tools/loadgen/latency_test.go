package loadgen

import (
	"testing"
	"time"
)

func TestPercentiles(t *testing.T) {
	var l []time.Duration
	for i := 100; i >= 1; i-- {
		l = append(l, time.Duration(i)*time.Millisecond)
	}
	p := Percentiles(l)
	if p.P50 != 51*time.Millisecond || p.P90 != 91*time.Millisecond || p.P99 != 100*time.Millisecond || p.Max != 100*time.Millisecond {
		t.Errorf("percentiles %+v", p)
	}
	if p.Mean != 50500*time.Microsecond {
		t.Errorf("mean %v", p.Mean)
	}
	if (Percentiles(nil) != Latencies{}) {
		t.Error("empty input")
	}
}
