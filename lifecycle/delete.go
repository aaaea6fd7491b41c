package lifecycle

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/csrd/csrd/store"
)

// DeleteRecords is what Delete reads and writes: the intent before the
// token changes, the deleted record after.
type DeleteRecords interface {
	Get(ctx context.Context, id int64) (*store.KeyRecord, error)
	BeginDelete(ctx context.Context, id int64, audit *store.AuditEntry) error
	FinishDelete(ctx context.Context, id int64, reason string, audit *store.AuditEntry) error
}

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
//
// audit, when set, is the request's audit row: it commits with the intent
// in step 1 (RecordID and KeyLabel filled in), before the token is touched,
// so a key is never destroyed without its row on the chain; if the row
// cannot be written, nothing is deleted. Its Hash is set once it is on the
// chain, even when a later step fails (the deletion is decided then).
func (s *Service) Delete(ctx context.Context, id int64, scope *store.Scope, audit *store.AuditEntry) error {
	unlock := s.locks.lock(id)
	defer unlock()
	rec, err := scopedRecord(ctx, s.deletes, id, scope)
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
	if err := s.deletes.BeginDelete(ctx, id, audit); err != nil {
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
	if err := s.deletes.FinishDelete(ctx, id, "deleted through the API", nil); err != nil {
		return err
	}
	s.log.Info().Int64("record", id).Str("label", rec.KeyLabel).Msg("pending CSR deleted; key destroyed")
	return nil
}

// DeleteMany deletes several pending CSRs. Every id is checked first, and
// if any is unknown (or outside scope) or not pending nothing is deleted
// and the error names them all. A failure while deleting (the HSM going
// away) stops there with a *BatchError saying what was done. Each record's
// intent commits with a copy of audit naming that record (see Delete); on
// return *audit is the last copy written (Hash "" when none was).
func (s *Service) DeleteMany(ctx context.Context, ids []int64, scope *store.Scope, audit *store.AuditEntry) error {
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
	return s.deleteEach(ctx, ids, scope, audit)
}

// deleteEach deletes ids in order, each with its own copy of audit.
func (s *Service) deleteEach(ctx context.Context, ids []int64, scope *store.Scope, audit *store.AuditEntry) error {
	var template store.AuditEntry
	if audit != nil {
		template = *audit
	}
	for i, id := range ids {
		var row *store.AuditEntry
		if audit != nil {
			row = new(store.AuditEntry)
			*row = template
		}
		err := s.Delete(ctx, id, scope, row)
		if row != nil && row.Hash != "" {
			*audit = *row
		}
		if err != nil {
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
