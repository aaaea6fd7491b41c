package bench

import (
	"math"
	"runtime"
	"testing"
)

// TestGivenBack: csrd's side gets its client's CPU seconds back, spread
// over the machine's cores, in a turn and in the turns combined; the raw
// loop, which has no client, keeps its measured throughput; and the ratios
// a report judges compare the given-back figures.
func TestGivenBack(t *testing.T) {
	n := float64(runtime.NumCPU())
	turn := func(ops int, seconds, clientPerOp float64) Measure {
		m := Measure{Ops: ops, Seconds: seconds, PerSecond: float64(ops) / seconds, ClientCPUPerOp: clientPerOp}
		m.setGivenBack()
		return m
	}
	tests := []struct {
		name string
		m    Measure
		want float64
	}{
		{"raw loop: no client", turn(100, 10, 0), 10},
		{"csrd: 0.2 s of client CPU", turn(100, 10, 0.002), 100 / (10 - 0.2/n)},
		{"two turns combined", combine([]Measure{turn(100, 10, 0.002), turn(50, 10, 0.004)}), 150 / (20 - 0.4/n)},
		{"client CPU beyond the window: measured", turn(10, 1, 1), 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.m.givenBack(); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("givenBack = %v, want %v", got, tt.want)
			}
			if tt.m.ClientCPUPerOp > 0 && tt.m.GivenBackPerSecond != tt.m.givenBack() {
				t.Errorf("report's figure %v, want %v", tt.m.GivenBackPerSecond, tt.m.givenBack())
			}
		})
	}

	raw := []Measure{turn(100, 10, 0), turn(100, 10, 0)}
	csrd := []Measure{turn(90, 10, 0.002), turn(90, 10, 0.002)}
	pooled, rounds := ratios(raw, csrd)
	if want := (180 / (20 - 0.36/n)) / 10; math.Abs(pooled-want) > 1e-9 || pooled <= 0.9 {
		t.Errorf("pooled ratio %v, want %v (above the measured 0.90)", pooled, want)
	}
	if len(rounds) != 2 || math.Abs(rounds[0]-pooled) > 1e-9 {
		t.Errorf("round ratios %v, want two of %v", rounds, pooled)
	}
}
