package lifecycle

import (
	"context"
	"errors"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/store"
)

// ReconcileReport says what Reconcile found and did.
type ReconcileReport struct {
	// Interrupted records were left "generating" by a crash.
	Interrupted int
	// KeysDestroyed of those still had a key in the token.
	KeysDestroyed int
}

// Reconcile finishes Generate calls that a crash interrupted: every record
// still "generating" either never got its key or got one that nobody was
// handed a CSR for. Either way the key (found by label and CKA_ID — a
// C_FindObjects is fine here, at start-up) is destroyed and the record
// marked failed. It stops at the first error so nothing is marked failed
// while its key might still exist.
func (s *Service) Reconcile(ctx context.Context) (ReconcileReport, error) {
	var rep ReconcileReport
	recs, err := s.records.ListByState(ctx, store.StateGenerating)
	if err != nil {
		return rep, err
	}
	for _, r := range recs {
		rep.Interrupted++
		ref := hsm.KeyRef{ID: r.KeyID, Label: r.KeyLabel}
		destroyed := false
		switch err := s.token.DestroyKey(ctx, ref); {
		case err == nil:
			destroyed = true
			rep.KeysDestroyed++
		case errors.Is(err, hsm.ErrNotFound):
		default:
			return rep, err
		}
		if err := s.records.FailKey(ctx, r.ID, "interrupted before the CSR was recorded; reconciled at start-up"); err != nil {
			return rep, err
		}
		s.log.Warn().Int64("record", r.ID).Str("label", r.KeyLabel).Bool("key_destroyed", destroyed).
			Msg("reconciled an interrupted generate")
	}
	return rep, nil
}
