package store

import "context"

// IntentRetire: a married key is being destroyed at the end of its life;
// the record becomes retired, keeping its certificate facts, once it is gone.
const IntentRetire Intent = "retire"

const (
	// beginRetireSQL repeats harmlessly on a record already being retired:
	// a retried retirement continues the interrupted one.
	beginRetireSQL = `UPDATE keys SET intent = 'retire', updated_time = ?, node = ?
WHERE id = ? AND state = 'married' AND (intent IS NULL OR intent = 'retire')`
	finishRetireSQL = `UPDATE keys SET state = 'retired', intent = NULL, updated_time = ?,
    fail_reason = COALESCE(?, fail_reason)
WHERE id = ? AND state = 'married' AND intent = 'retire'`
)

// BeginRetire commits the intent to destroy a married record's key. A
// non-nil audit row is appended in the same transaction, as with
// BeginDelete: the row is on the chain exactly when the destruction is
// decided, before the token is touched. A record that is not married is a
// *TransitionError, one under another operation a *BusyError. The record
// is leased to this Store's node (WithNode) until the retirement finishes.
func (s *Store) BeginRetire(ctx context.Context, id int64, audit *AuditEntry) error {
	return s.intentTx(ctx, transition{op: "begin retire", id: id, from: []State{StateMarried}, to: StateRetired}, audit,
		beginRetireSQL, formatTime(s.now()), nullString(s.node), id)
}

// FinishRetire records that the key is gone: the record becomes retired and
// its intent is cleared. reason ("" for none) says why it was retired.
func (s *Store) FinishRetire(ctx context.Context, id int64, reason string) error {
	return s.intentTx(ctx, transition{op: "finish retire", id: id, from: []State{StateMarried}, to: StateRetired}, nil,
		finishRetireSQL, formatTime(s.now()), nullString(reason), id)
}
