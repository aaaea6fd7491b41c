package bench

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestMarkdownFillSentence: the "filled" note says what the fill did,
// including when the earlier cells had already left enough keys.
func TestMarkdownFillSentence(t *testing.T) {
	tests := []struct {
		name      string
		fill      FillInfo
		want, not string
	}{
		{"keys added", FillInfo{Added: 3854, Total: 10000, Seconds: 14.6},
			"brought to 10000 csrd keys with records (3854 added in 15s", "none were added"},
		{"nothing to add", FillInfo{Added: 0, Total: 10000},
			"already left at least 10000 csrd keys with records on the token, so none were added", "0 added"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Report{Fill: &tt.fill}
			md := r.Markdown()
			if !strings.Contains(md, tt.want) {
				t.Errorf("markdown lacks %q:\n%s", tt.want, md)
			}
			if strings.Contains(md, tt.not) {
				t.Errorf("markdown says %q:\n%s", tt.not, md)
			}
		})
	}
}

// TestMarkdownCellToken: a run whose cells were on another token than
// SoftHSM directly says which, so its figures are never read as SoftHSM's.
func TestMarkdownCellToken(t *testing.T) {
	for _, tc := range []struct{ token, want string }{
		{"", ""}, {"softhsm", ""}, {"p11kit", "p11-kit remoting"}, {"tpm", "TPM 2.0 token"},
	} {
		md := (&Report{Options: ReportOpts{Token: tc.token}}).Markdown()
		says := strings.Contains(md, "The side-by-side cells ran on")
		if says != (tc.want != "") || !strings.Contains(md, tc.want) {
			t.Errorf("token %q: markdown says the cells' token %v, want %q:\n%s", tc.token, says, tc.want, md)
		}
	}
}

// TestMarkdownTokens: the token cells get a table of their own, a row
// per token, key type and concurrency, and a token that could not run
// says why; without token cells there is no such table.
func TestMarkdownTokens(t *testing.T) {
	m := func(ps float64) *Measure { return &Measure{PerSecond: ps} }
	r := &Report{Options: ReportOpts{TokenDurationS: 6, SlowFactor: 3}, Tokens: []TokenRun{
		{Token: "p11kit", Cells: []Cell{{Alg: "P-256", C: 4, Raw: m(80), CSRD: m(60), Ratio: 0.75, MeasuredRatio: 0.7}}},
		{Token: "tpm", Unsupported: "fixture: TPM token not available"},
	}}
	md := r.Markdown()
	for _, want := range []string{"on each token", "| p11kit | P-256 | 4 | 80.0 | 60.0 | **0.75** |", "| tpm | all | – | not run |",
		"tpm: fixture: TPM token not available", "6s window"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains((&Report{}).Markdown(), "on each token") {
		t.Error("a report without token cells has their table")
	}
}

// TestAlternate: the sides take turns in ABBA order, each turn a rounds-th
// of the window, and every turn lands with its own side.
func TestAlternate(t *testing.T) {
	tests := []struct {
		rounds int
		order  string
	}{
		{1, "ab"},
		{2, "abba"},
		{4, "abbaabba"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.rounds), func(t *testing.T) {
			var order strings.Builder
			side := func(name byte, perSecond float64) func(durations) (Measure, error) {
				return func(d durations) (Measure, error) {
					if want := 12 * time.Second / time.Duration(tt.rounds); d.measure != want {
						t.Errorf("turn of %v, want %v", d.measure, want)
					}
					order.WriteByte(name)
					return Measure{PerSecond: perSecond}, nil
				}
			}
			as, bs, err := alternate(tt.rounds, durations{measure: 12 * time.Second}, side('a', 10), side('b', 9))
			if err != nil {
				t.Fatal(err)
			}
			if order.String() != tt.order {
				t.Errorf("order %q, want %q", order.String(), tt.order)
			}
			if len(as) != tt.rounds || len(bs) != tt.rounds {
				t.Fatalf("%d and %d turns, want %d each", len(as), len(bs), tt.rounds)
			}
			for i := range as {
				if as[i].PerSecond != 10 || bs[i].PerSecond != 9 {
					t.Errorf("round %d: a %v, b %v: a turn landed with the other side", i, as[i].PerSecond, bs[i].PerSecond)
				}
			}
		})
	}
}

// TestRotate: with more than two sides (the pool rows) every round gives
// each side one turn, in order and then reversed, and each side's turns
// stay its own.
func TestRotate(t *testing.T) {
	tests := []struct {
		rounds, sides int
		order         string
	}{
		{1, 3, "abc"},
		{2, 3, "abccba"},
		{3, 4, "abcddcbaabcd"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%dx%d", tt.rounds, tt.sides), func(t *testing.T) {
			var order strings.Builder
			sides := make([]func(durations) (Measure, error), tt.sides)
			for k := range sides {
				sides[k] = func(d durations) (Measure, error) {
					if want := 6 * time.Second / time.Duration(tt.rounds); d.measure != want {
						t.Errorf("turn of %v, want %v", d.measure, want)
					}
					order.WriteByte(byte('a' + k))
					return Measure{PerSecond: float64(k)}, nil
				}
			}
			turns, err := rotate(tt.rounds, durations{measure: 6 * time.Second}, sides)
			if err != nil {
				t.Fatal(err)
			}
			if order.String() != tt.order {
				t.Errorf("order %q, want %q", order.String(), tt.order)
			}
			for k, ms := range turns {
				if len(ms) != tt.rounds {
					t.Errorf("side %d: %d turns, want %d", k, len(ms), tt.rounds)
				}
				for _, m := range ms {
					if m.PerSecond != float64(k) {
						t.Errorf("side %d holds a turn of side %v", k, m.PerSecond)
					}
				}
			}
		})
	}
}

// TestNoiseNote: a missed ratio target carries the raw loop's ratio against
// itself; a met one, or a run without noise cells, does not.
func TestNoiseNote(t *testing.T) {
	p256 := Noise{Alg: "P-256", C: 4, Ratio: 0.93, RoundRatios: []float64{0.81, 1.07}}
	legacy := Noise{C: 4, Ratio: 0.93, RoundRatios: []float64{0.81, 1.07}} // a report from before Alg
	rsa := Noise{Alg: "RSA-2048", C: 1, Ratio: 0.88, RoundRatios: []float64{0.88}}
	cell := func(alg string, ratio float64) Cell {
		return Cell{Phase: "empty", Alg: alg, C: 4, Ratio: ratio, Raw: &Measure{}, CSRD: &Measure{}}
	}
	const p256Note = "the raw loop against itself (P-256) in this run: C=4 0.93 (rounds 0.81–1.07)"
	const rsaNote = "the raw loop against itself (RSA-2048) in this run: C=1 0.88"
	tests := []struct {
		name, alg string
		min       float64
		r         Report
		note      string // "" when none is wanted
	}{
		{"missed, noise measured", "P-256", 0.90, Report{Cells: []Cell{cell("P-256", 0.85)}, Noise: []Noise{p256, rsa}}, p256Note},
		{"met", "P-256", 0.90, Report{Cells: []Cell{cell("P-256", 0.95)}, Noise: []Noise{p256}}, ""},
		{"missed, no noise cells", "P-256", 0.90, Report{Cells: []Cell{cell("P-256", 0.85)}}, ""},
		{"a report without Alg is P-256's", "P-256", 0.90, Report{Cells: []Cell{cell("P-256", 0.85)}, Noise: []Noise{legacy}}, p256Note},
		{"Ed25519 is calibrated by P-256", "Ed25519", 0.90, Report{Cells: []Cell{cell("Ed25519", 0.85)}, Noise: []Noise{p256, rsa}}, p256Note},
		{"RSA by its own cells, one turn: no rounds", "RSA-2048", 0.95, Report{Cells: []Cell{cell("RSA-2048", 0.90)}, Noise: []Noise{p256, rsa}}, rsaNote},
		{"RSA never by P-256's", "RSA-2048", 0.95, Report{Cells: []Cell{cell("RSA-2048", 0.90)}, Noise: []Noise{p256}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Target
			for _, tg := range tt.r.Targets() {
				if strings.Contains(tg.Name, " "+tt.alg+" at every C") {
					got = tg
				}
			}
			if tt.note == "" && strings.Contains(got.Detail, "against itself") {
				t.Errorf("detail %q carries a noise note, want none", got.Detail)
			}
			if tt.note != "" && !strings.Contains(got.Detail, tt.note) {
				t.Errorf("detail %q, want it to carry %q", got.Detail, tt.note)
			}
			if got.Met != (tt.r.Cells[0].Ratio >= tt.min) {
				t.Errorf("met %v for ratio %.2f: the note must not change the verdict", got.Met, tt.r.Cells[0].Ratio)
			}
		})
	}
}

// TestBelow: a missed ratio never prints as its own target.
func TestBelow(t *testing.T) {
	tests := []struct {
		ratio, min float64
		want       string
	}{
		{0.89, 0.90, "0.89"},
		{0.947, 0.95, "0.947"},
		{0.8951, 0.90, "0.895"},
		{0.5, 0.95, "0.50"},
	}
	for _, tt := range tests {
		if got := below(tt.ratio, tt.min); got != tt.want {
			t.Errorf("below(%v, %v) = %q, want %q", tt.ratio, tt.min, got, tt.want)
		}
	}
}
