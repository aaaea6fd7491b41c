package main

import (
	"context"
	"crypto"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/checkpoint"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/store"
)

// finalCheckpointTimeout bounds the checkpoints signed at start and at
// shutdown.
const finalCheckpointTimeout = 10 * time.Second

// startCheckpoints signs checkpoints of the audit log with the audit key of
// tok — the first configured token — as node until the returned stop is called;
// stop then signs the rows appended since the last one. Call stop after
// the HTTP server has stopped and before db and tok close.
func startCheckpoints(ctx context.Context, log zerolog.Logger, node string, tok *hsm.Token, db *store.Store) (cp *checkpoint.Checkpointer, stop func()) {
	cp = checkpoint.New(log, db, func(ctx context.Context) (crypto.Signer, error) { return tok.AuditKey(ctx) },
		checkpoint.Options{Node: node})
	// The first before csrd serves: it covers what csrctl appended while
	// csrd was stopped, and makes the audit key (a token object) now
	// rather than under traffic.
	first, cancelFirst := context.WithTimeout(ctx, finalCheckpointTimeout)
	_, _ = cp.Checkpoint(first) // a failure is logged; Run tries again
	cancelFirst()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		cp.Run(ctx)
	}()
	log.Info().Str("token", tok.Label()).Str("label", hsm.AuditKeyLabel).Dur("interval", checkpoint.DefaultInterval).
		Msg("audit checkpoints are signed with the first token's audit key")
	return cp, func() {
		cancel()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), finalCheckpointTimeout)
		defer cancel()
		_, _ = cp.Checkpoint(ctx) // a failure is logged; the chain still holds the rows
	}
}

// lastCheckpoint is when the last audit checkpoint was signed, in Unix
// seconds (0 before the first), for csrd_audit_last_checkpoint_timestamp_seconds.
func (a *app) lastCheckpoint() float64 {
	at := a.checkpoints.Status().LastAt
	if at.IsZero() {
		return 0
	}
	return float64(at.UnixNano()) / 1e9
}
