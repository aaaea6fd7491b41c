package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Intent names a token operation on a record that was decided and committed
// before the token was touched, and is cleared in the transaction that
// records its outcome. A crash in between leaves the intent set, and
// reconciliation finishes the operation. The record's State stays the stable
// lifecycle state meanwhile (a key being deleted is still pending).
type Intent string

// The intents.
const (
	IntentNone Intent = ""
	// IntentDelete: the key pair (and any other key material of the record)
	// is being destroyed; the record becomes deleted once it is gone.
	IntentDelete Intent = "delete"
	// IntentMarry: the certificate in the record's Cert is being written to
	// the token next to the key; the record becomes married once it is.
	IntentMarry Intent = "marry"
)

// BusyError reports a record on which another operation is under way (or
// was interrupted and awaits reconciliation). It matches ErrConflict.
type BusyError struct {
	ID     int64
	Intent Intent
}

func (e *BusyError) Error() string {
	what := map[Intent]string{IntentDelete: "being deleted", IntentMarry: "being married to a certificate", IntentRetire: "being retired"}[e.Intent]
	if what == "" {
		what = "busy (" + string(e.Intent) + ")"
	}
	return fmt.Sprintf("store: key %d is %s", e.ID, what)
}

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *BusyError) Unwrap() error { return ErrConflict }

const (
	// beginDeleteSQL repeats harmlessly on a record already being deleted:
	// a retried delete continues the interrupted one.
	beginDeleteSQL = `UPDATE keys SET intent = 'delete', updated_time = ?, node = ?
WHERE id = ? AND state = 'pending' AND (intent IS NULL OR intent = 'delete')`
	finishDeleteSQL = `UPDATE keys SET state = 'deleted', intent = NULL, updated_time = ?,
    fail_reason = COALESCE(?, fail_reason)
WHERE id = ? AND state = 'pending' AND intent = 'delete'`

	// beginMarriageSQL stores the candidate certificate with the intent. The
	// same certificate may begin again (a retry after a failure or crash);
	// another one may not while a marriage is unfinished.
	beginMarriageSQL = `UPDATE keys SET intent = 'marry', updated_time = ?, node = ?, cert_der = ?, cert_chain_pem = ?,
    cert_serial = ?, cert_issuer = ?, cert_subject = ?, cert_thumbprint = ?, cert_not_before = ?, cert_not_after = ?
WHERE id = ? AND state = 'pending' AND (intent IS NULL OR (intent = 'marry' AND cert_thumbprint = ?))`
	finishMarriageSQL = `UPDATE keys SET state = 'married', intent = NULL, updated_time = ?, married_time = ?
WHERE id = ? AND state = 'pending' AND intent = 'marry'`

	// abortMarriageSQL forgets a candidate certificate that cannot be stored.
	abortMarriageSQL = `UPDATE keys SET intent = NULL, updated_time = ?, cert_der = NULL, cert_chain_pem = NULL,
    cert_serial = NULL, cert_issuer = NULL, cert_subject = NULL, cert_thumbprint = NULL, cert_not_before = NULL,
    cert_not_after = NULL
WHERE id = ? AND state = 'pending' AND intent = 'marry'`

	// markLostSQL only touches records with no operation under way: a key
	// that disappears during a delete is being deleted, not lost.
	markLostSQL = `UPDATE keys SET state = 'lost', updated_time = ?, fail_reason = ?
WHERE id = ? AND state IN ('pending', 'married') AND intent IS NULL`
	// markLostMarryingSQL gives up an unfinished marriage whose key is gone.
	markLostMarryingSQL = `UPDATE keys SET state = 'lost', intent = NULL, updated_time = ?, fail_reason = ?
WHERE id = ? AND state = 'pending' AND intent = 'marry'`

	keyStateIntentSQL = `SELECT state, intent FROM keys WHERE id = ?`
	listByIntentSQL   = `SELECT ` + keyColumns + ` FROM keys WHERE intent = ? ORDER BY id`
)

// BeginDelete commits the intent to delete a pending record's key. Only a
// pending record can be deleted; one being married is a *BusyError. A
// non-nil audit row is appended in the same transaction (RecordID and
// KeyLabel filled in from the record): the intent is the point from which
// the key will be destroyed, by this request or by reconciliation, so the
// row is on the chain exactly when the deletion is decided, and a failed
// append leaves nothing decided and the token untouched. The record is
// leased to this Store's node (WithNode) until the delete finishes.
func (s *Store) BeginDelete(ctx context.Context, id int64, audit *AuditEntry) error {
	return s.intentTx(ctx, transition{op: "begin delete", id: id, from: []State{StatePending}, to: StateDeleted}, audit,
		beginDeleteSQL, formatTime(s.now()), nullString(s.node), id)
}

// FinishDelete records that the key is gone: the record becomes deleted and
// its intent is cleared. reason ("" for none) says who deleted it. A
// non-nil audit row is appended in the same transaction (RecordID and
// KeyLabel filled in): reconciliation, finishing a delete it did not begin,
// records its own act with the record's change.
func (s *Store) FinishDelete(ctx context.Context, id int64, reason string, audit *AuditEntry) error {
	return s.intentTx(ctx, transition{op: "finish delete", id: id, from: []State{StatePending}, to: StateDeleted}, audit,
		finishDeleteSQL, formatTime(s.now()), nullString(reason), id)
}

// BeginMarriage commits the intent to marry cert to a pending record's key,
// storing the certificate so that reconciliation can finish the job.
// Beginning again with the same certificate (same thumbprint) is allowed.
// A non-nil audit row commits with the intent, as with BeginDelete.
func (s *Store) BeginMarriage(ctx context.Context, id int64, cert CertInfo, audit *AuditEntry) error {
	if err := cert.check(); err != nil {
		return err
	}
	return s.intentTx(ctx, transition{op: "begin marriage", id: id, from: []State{StatePending}, to: StateMarried}, audit,
		beginMarriageSQL, formatTime(s.now()), nullString(s.node), cert.DER, nullString(cert.ChainPEM), nullString(cert.Serial),
		nullString(cert.Issuer), nullString(cert.Subject), cert.Thumbprint, formatTime(cert.NotBefore),
		formatTime(cert.NotAfter), id, cert.Thumbprint)
}

// FinishMarriage records that the certificate is in the token: the record
// becomes married. A non-nil audit row commits with it, as with
// FinishDelete.
func (s *Store) FinishMarriage(ctx context.Context, id int64, audit *AuditEntry) error {
	now := formatTime(s.now())
	return s.intentTx(ctx, transition{op: "finish marriage", id: id, from: []State{StatePending}, to: StateMarried}, audit,
		finishMarriageSQL, now, now, id)
}

// AbortMarriage clears an unfinished marriage whose certificate cannot be
// stored in the token (the record is pending again, without certificate).
func (s *Store) AbortMarriage(ctx context.Context, id int64) error {
	return s.intentTx(ctx, transition{op: "abort marriage", id: id, from: []State{StatePending}, to: StatePending}, nil,
		abortMarriageSQL, formatTime(s.now()), id)
}

// MarkLost records that the key of a pending or married record is gone from
// the token. A record with an operation under way is a *BusyError. A
// non-nil audit row is appended in the same transaction.
func (s *Store) MarkLost(ctx context.Context, id int64, reason string, audit *AuditEntry) error {
	return s.intentTx(ctx, transition{op: "mark lost", id: id, from: []State{StatePending, StateMarried}, to: StateLost}, audit,
		markLostSQL, formatTime(s.now()), nullString(reason), id)
}

// AbandonMarriage marks a record lost whose marriage cannot finish because
// its key is gone from the token. A non-nil audit row is appended in the
// same transaction.
func (s *Store) AbandonMarriage(ctx context.Context, id int64, reason string, audit *AuditEntry) error {
	return s.intentTx(ctx, transition{op: "abandon marriage", id: id, from: []State{StatePending}, to: StateLost}, audit,
		markLostMarryingSQL, formatTime(s.now()), nullString(reason), id)
}

// ListByIntent returns the records with intent in, oldest id first.
func (s *Store) ListByIntent(ctx context.Context, in Intent) ([]*KeyRecord, error) {
	if in != IntentDelete && in != IntentMarry && in != IntentRetire {
		return nil, fmt.Errorf("store: list by intent: unknown intent %q", in)
	}
	return s.queryKeys(ctx, "list by intent", listByIntentSQL, string(in))
}

// intentTx runs t as one compare-and-set UPDATE, query, whose WHERE names
// the states and the intent it accepts. When it matched no row it explains
// why from the record as it is in the same transaction: unknown id
// (ErrNotFound), wrong state (*TransitionError) or another intent
// (*BusyError). A non-nil audit row is appended when the update matched, in
// the same transaction.
func (s *Store) intentTx(ctx context.Context, t transition, audit *AuditEntry, query string, args ...any) error {
	op, id, from, to := t.op, t.id, t.from, t.to
	if audit != nil {
		if err := checkAudit(audit); err != nil {
			return err
		}
	}
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
			return s.recordAudit(ctx, tx, id, audit)
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
		}
		stateOK := false
		for _, f := range from {
			stateOK = stateOK || f == cur
		}
		if !stateOK {
			return &TransitionError{ID: id, State: cur, From: from, To: to}
		}
		return &BusyError{ID: id, Intent: Intent(intent.String)}
	})
}

// CertInfo is the certificate married to a key, with the facts csrd looks
// it up by. Times are UTC.
type CertInfo struct {
	DER        []byte
	ChainPEM   string // issuer certificates the client sent along, PEM, may be ""
	Serial     string // upper-case hex, as Keyfactor shows serial numbers
	Issuer     string // issuer DN, RFC 4514
	Subject    string // subject DN, RFC 4514
	Thumbprint string // SHA-1 of DER, upper-case hex (Keyfactor's thumbprint)
	NotBefore  time.Time
	NotAfter   time.Time
}

func (c CertInfo) check() error {
	switch {
	case len(c.DER) == 0:
		return errors.New("store: certificate: DER is empty")
	case len(c.Thumbprint) != 40:
		return fmt.Errorf("store: certificate: thumbprint %q is not 40 hex digits", c.Thumbprint)
	case c.NotBefore.IsZero() || c.NotAfter.IsZero():
		return errors.New("store: certificate: validity dates are required")
	}
	return nil
}
