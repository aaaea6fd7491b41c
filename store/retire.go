package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// IntentRetire: a married key is being destroyed at the end of its life;
// the record becomes retired, keeping its certificate facts, once it is gone.
const IntentRetire Intent = "retire"

const (
	// beginRetireSQL repeats harmlessly on a record already being retired:
	// a retried retirement continues the interrupted one.
	beginRetireSQL = `UPDATE keys SET intent = 'retire', updated_time = ?
WHERE id = ? AND state = 'married' AND (intent IS NULL OR intent = 'retire')`
	finishRetireSQL = `UPDATE keys SET state = 'retired', intent = NULL, updated_time = ?,
    fail_reason = COALESCE(?, fail_reason)
WHERE id = ? AND state = 'married' AND intent = 'retire'`
)

// BeginRetire commits the intent to destroy a married record's key. A
// non-nil audit row (RecordID set by the caller) is appended in the same
// transaction: the row is on the chain exactly when the destruction is
// decided, before the token is touched. A record that is not married is a
// *TransitionError, one under another operation a *BusyError.
func (s *Store) BeginRetire(ctx context.Context, id int64, audit *AuditEntry) error {
	if audit != nil {
		if err := checkAudit(audit); err != nil {
			return err
		}
	}
	return s.retireTx(ctx, "begin retire", id, audit, beginRetireSQL, formatTime(s.now()), id)
}

// FinishRetire records that the key is gone: the record becomes retired and
// its intent is cleared. reason ("" for none) says why it was retired.
func (s *Store) FinishRetire(ctx context.Context, id int64, reason string) error {
	return s.retireTx(ctx, "finish retire", id, nil, finishRetireSQL, formatTime(s.now()), nullString(reason), id)
}

// retireTx runs one compare-and-set UPDATE of a married record and, when it
// matched no row, explains why from the record as it is in the same
// transaction.
func (s *Store) retireTx(ctx context.Context, op string, id int64, audit *AuditEntry, query string, args ...any) error {
	return s.withTx(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return dbErr(op, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return dbErr(op, err)
		}
		if n == 1 {
			if audit == nil {
				return nil
			}
			return s.appendAuditTx(ctx, tx, audit)
		}
		var (
			cur    State
			intent sql.NullString
		)
		switch err := tx.QueryRowContext(ctx, keyStateIntentSQL, id).Scan(&cur, &intent); {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("%w: key %d", ErrNotFound, id)
		case err != nil:
			return dbErr(op, err)
		case cur != StateMarried:
			return &TransitionError{ID: id, State: cur, From: []State{StateMarried}, To: StateRetired}
		}
		return &BusyError{ID: id, Intent: Intent(intent.String)}
	})
}
