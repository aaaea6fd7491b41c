package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/csrd/csrd/fixture"
)

// TokenRun is one token's cells (Options.TokenCells): csrd and the raw
// loop side by side on a fresh token, with the run's schedule in short.
type TokenRun struct {
	Token string `json:"token"` // "p11kit", "tpm"
	Cells []Cell `json:"cells,omitempty"`
	// Unsupported says why the token could not be set up here (its
	// packages missing); the run goes on without it.
	Unsupported string `json:"unsupported,omitempty"`
}

// runTokenCells runs each token's cells in turn, as a run of its own on
// that token (Options.Token) restricted to the token cells' key types,
// concurrency levels and window, in a work directory of its own.
func runTokenCells(ctx context.Context, o Options) ([]TokenRun, error) {
	var out []TokenRun
	for _, t := range o.TokenCells {
		if _, ok := cellTokens[t]; !ok {
			return nil, fmt.Errorf("bench: token cells: unknown token %q (p11kit, tpm)", t)
		}
		sub := o
		sub.Token, sub.Dir, sub.Algs, sub.Concurrency, sub.Duration = t, filepath.Join(o.Dir, "cells-"+t), o.TokenAlgs, o.TokenC, o.TokenDuration
		sub.NoiseC, sub.NoiseSlowC, sub.TokenCells, sub.TokenCellsOnly, sub.BackendC, sub.BackendsOnly = nil, nil, nil, false, 0, false
		sub.Progress = prefixed(o.Progress, t)
		if err := os.MkdirAll(sub.Dir, 0o700); err != nil {
			return nil, err
		}
		rep, err := runSideBySide(ctx, sub)
		switch {
		case errors.Is(err, fixture.ErrNoTPM), errors.Is(err, fixture.ErrNoP11Kit):
			fmt.Fprintf(progress(o.Progress), "%s: not run: %v\n", t, err)
			out = append(out, TokenRun{Token: t, Unsupported: err.Error()})
		case err != nil:
			return nil, fmt.Errorf("bench: token cells on %s: %w", t, err)
		default:
			out = append(out, TokenRun{Token: t, Cells: rep.Cells})
		}
	}
	return out, nil
}

func progress(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// prefixed writes each progress line of a token's cells after its name.
func prefixed(w io.Writer, name string) io.Writer {
	return &prefixWriter{w: progress(w), prefix: name + ": "}
}

type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.w, p.prefix+string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}
