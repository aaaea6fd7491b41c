package lifecycle

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/csrd/csrd/store"
)

// Delete destroys the key pair of a pending CSR and marks its record
// deleted; a record outside scope (nil: no limit) is ErrNotFound exactly as
// if it did not exist. The order makes a crash at any point repairable:
//
//  1. the intent to delete is committed (the record stays pending but is no
//     longer listed or importable);
//  2. every object of the key is destroyed in the token;
//  3. the record becomes deleted.
//
// A crash after 1 or 2 leaves the intent; reconciliation (or retrying the
// Delete) destroys whatever is left and finishes. So the token never holds
// a key whose record says deleted, and no record says pending for a key the
// token no longer has.
func (s *Service) Delete(ctx context.Context, id int64, scope *store.Scope) error {
	unlock := s.locks.lock(id)
	defer unlock()
	rec, err := s.scopedRecord(ctx, id, scope)
	if err != nil {
		return err
	}
	// A delete interrupted earlier is continued, not refused.
	if rec.State != store.StatePending || rec.Intent == store.IntentMarry {
		return notPending(rec)
	}
	if !s.tokens.reaches(rec.TokenLabel, rec.TokenSerial) {
		// Destroying "nothing" here would mark deleted a key that lives on.
		return &ElsewhereError{ID: rec.ID, TokenLabel: rec.TokenLabel, TokenSerial: rec.TokenSerial}
	}
	if err := s.records.BeginDelete(ctx, id); err != nil {
		return deleteRefused(rec, err)
	}
	s.step("delete-recorded")
	// Finishing is cheaper than leaving an intent behind when the client
	// hangs up.
	ctx = context.WithoutCancel(ctx)
	if _, err := s.destroyKeyMaterial(ctx, rec); err != nil {
		s.log.Error().Err(err).Int64("record", id).Msg("delete: could not destroy the key; the record keeps its delete intent for reconciliation")
		return err
	}
	s.step("delete-destroyed")
	if err := s.records.FinishDelete(ctx, id, "deleted through the API"); err != nil {
		return err
	}
	s.log.Info().Int64("record", id).Str("label", rec.KeyLabel).Msg("pending CSR deleted; key destroyed")
	return nil
}

// DeleteMany deletes several pending CSRs. Every id is checked first, and
// if any is unknown (or outside scope) or not pending nothing is deleted
// and the error names them all. A failure while deleting (the HSM going
// away) stops there with a *BatchError saying what was done.
func (s *Service) DeleteMany(ctx context.Context, ids []int64, scope *store.Scope) error {
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	var bad []string
	var class error
	for _, id := range ids {
		if _, err := s.pendingRecord(ctx, id, scope); err != nil {
			var le *Error
			if !errors.As(err, &le) {
				return err
			}
			bad = append(bad, le.Msg)
			class = le.Class
		}
	}
	switch len(bad) {
	case 0:
	case 1:
		return newErr(class, "%s; nothing was deleted", bad[0])
	default:
		return newErr(ErrNotFound, "%d of the Ids are not pending CSRs, so nothing was deleted: %s", len(bad), strings.Join(bad, "; "))
	}
	for i, id := range ids {
		if err := s.Delete(ctx, id, scope); err != nil {
			return &BatchError{Done: ids[:i], Failed: id, Err: err, Remaining: ids[i+1:]}
		}
	}
	return nil
}

func deleteRefused(rec *store.KeyRecord, err error) error {
	var be *store.BusyError
	var te *store.TransitionError
	switch {
	case errors.As(err, &be):
		rec.Intent = be.Intent
		return notPending(rec)
	case errors.As(err, &te):
		rec.State = te.State
		return notPending(rec)
	}
	return err
}
