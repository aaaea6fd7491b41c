package bench

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
)

// defaultGoals is targets.json: what csrd is held to unless a run is given
// another file (csrd-bench -targets).
//
//go:embed targets.json
var defaultGoals []byte

// Goals are the figures a report's targets hold csrd to. They are data,
// not code: the report evaluates whatever the file says.
type Goals struct {
	// Ratio: (b)/(a) at least Min for key type Alg in every empty-token cell.
	Ratio []struct {
		Alg string  `json:"alg"`
		Min float64 `json:"min"`
	} `json:"ratio"`
	// Filled: csrd's throughput on the filled token at least Min × on the
	// empty one, for key type Alg at each C.
	Filled struct {
		Alg string  `json:"alg"`
		Min float64 `json:"min"`
	} `json:"filled"`
	// Pool: csrd over Tokens tokens at least Min × over the first row's.
	Pool struct {
		Tokens int     `json:"tokens"`
		Min    float64 `json:"min"`
	} `json:"pool"`
	// Failover: at most MaxErrors failed requests while a token is down.
	Failover struct {
		MaxErrors int `json:"max_errors"`
	} `json:"failover"`
	// PeakRSS: csrd's peak below BelowMiB in the memory run, or, without
	// one, in the side-by-side cells at concurrency C.
	PeakRSS struct {
		C        int     `json:"c"`
		BelowMiB float64 `json:"below_mib"`
	} `json:"peak_rss"`
	// P99: csrd's p99 at most MaxTimesP50 × its p50 in cells up to MaxC.
	P99 struct {
		MaxC        int     `json:"max_c"`
		MaxTimesP50 float64 `json:"max_times_p50"`
	} `json:"p99"`
	// Backends: csrd on PostgreSQL at least Min × csrd on SQLite at C.
	Backends struct {
		C   int     `json:"c"`
		Min float64 `json:"min"`
	} `json:"backends"`
	// Errors: at most Max failed operations in the side-by-side cells.
	Errors struct {
		Max int `json:"max"`
	} `json:"errors"`
}

// LoadGoals reads a targets file; an empty path is the built-in one.
func LoadGoals(path string) (*Goals, error) {
	b := defaultGoals
	if path != "" {
		var err error
		if b, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("bench: targets: %w", err)
		}
	}
	return parseGoals(b)
}

func parseGoals(b []byte) (*Goals, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var g Goals
	if err := dec.Decode(&g); err != nil {
		return nil, fmt.Errorf("bench: targets: %w", err)
	}
	for _, r := range g.Ratio {
		if _, err := lookupAlg(r.Alg); err != nil {
			return nil, fmt.Errorf("bench: targets: ratio: %w", err)
		}
	}
	return &g, nil
}
