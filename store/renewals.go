package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// RenewalState is where an enrolled certificate is in its life; see the
// renewals table (migration 0040).
type RenewalState string

// The renewal states.
const (
	RenewalScheduled RenewalState = "scheduled"
	RenewalRenewing  RenewalState = "renewing"
	RenewalRenewed   RenewalState = "renewed"
	RenewalRetired   RenewalState = "retired"
)

// Renewal is the renewal row of one enrolled certificate (its record).
type Renewal struct {
	RecordID    int64
	CA          string
	State       RenewalState
	RenewAt     time.Time // zero: not computed yet
	NewRecordID int64     // renewing/renewed: the new key's record
	RetireAt    time.Time // renewed: when the old key is retired
	// HookPending: the deploy hook has yet to succeed for this certificate.
	HookPending bool
	Attempts    int
	NextAttempt time.Time // after a failure: not before then
	LastError   string
	Updated     time.Time
}

// RenewalStateError reports a renewal that is not in the state an update
// starts from. It matches ErrConflict.
type RenewalStateError struct {
	RecordID int64
	State    RenewalState
	Want     RenewalState
}

func (e *RenewalStateError) Error() string {
	return fmt.Sprintf("store: the certificate of key %d is %s, not %s", e.RecordID, e.State, e.Want)
}

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *RenewalStateError) Unwrap() error { return ErrConflict }

const (
	renewalColumns = `record_id, ca, state, renew_at, new_record_id, retire_at, hook, attempts, next_attempt,
    last_error, updated_time`
	getRenewalSQL    = `SELECT ` + renewalColumns + ` FROM renewals WHERE record_id = ?`
	renewalsInSQL    = `SELECT ` + renewalColumns + ` FROM renewals WHERE state = ? ORDER BY record_id`
	pendingHooksSQL  = `SELECT ` + renewalColumns + ` FROM renewals WHERE hook = 'pending' ORDER BY record_id`
	setRenewAtSQL    = `UPDATE renewals SET renew_at = ?, updated_time = ? WHERE record_id = ? AND state = 'scheduled'`
	forceRenewalSQL  = `UPDATE renewals SET renew_at = ?, next_attempt = NULL, updated_time = ? WHERE record_id = ? AND state = 'scheduled'`
	claimRenewalSQL  = `UPDATE renewals SET state = 'renewing', attempts = attempts + 1, updated_time = ? WHERE record_id = ? AND state = 'scheduled'`
	renewalKeySQL    = `UPDATE renewals SET new_record_id = ?, updated_time = ? WHERE record_id = ? AND state = 'renewing' AND (new_record_id IS NULL OR new_record_id = ?)`
	deferRenewalSQL  = `UPDATE renewals SET next_attempt = ?, last_error = ?, updated_time = ? WHERE record_id = ? AND state = ?`
	releaseRenewSQL  = `UPDATE renewals SET state = 'scheduled', new_record_id = NULL, next_attempt = ?, last_error = ?, updated_time = ? WHERE record_id = ? AND state = 'renewing'`
	retryRenewingSQL = `UPDATE renewals SET attempts = attempts + 1, updated_time = ? WHERE record_id = ? AND state = 'renewing'`
	// attempts counts the failures of the step a row waits on: its deploy
	// hook while that is pending, then its renewal; so a failing hook backs
	// off as a failing renewal does, and its renewal starts afresh.
	hookDoneSQL = `UPDATE renewals SET hook = 'done', last_error = NULL, next_attempt = NULL, updated_time = ?,
    attempts = CASE WHEN state = 'scheduled' THEN 0 ELSE attempts END WHERE record_id = ? AND hook = 'pending'`
	hookFailedSQL = `UPDATE renewals SET last_error = ?, next_attempt = ?, updated_time = ?, attempts = attempts + 1
    WHERE record_id = ? AND hook = 'pending'`
	retiredSQL = `UPDATE renewals SET state = 'retired', updated_time = ? WHERE record_id = ? AND state IN ('scheduled', 'renewed')`
)

// GetRenewal returns the renewal row of record id; ErrNotFound when csrd
// did not enroll that record's certificate.
func (s *Store) GetRenewal(ctx context.Context, id int64) (*Renewal, error) {
	r, err := scanRenewal(s.queryRow(ctx, getRenewalSQL, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: no certificate enrolled by csrd for key %d", ErrNotFound, id)
	}
	return r, dbErr("get renewal", err)
}

// ListRenewals returns the renewals in state st, by record id.
func (s *Store) ListRenewals(ctx context.Context, st RenewalState) ([]*Renewal, error) {
	return s.queryRenewals(ctx, "list renewals", renewalsInSQL, st)
}

// PendingHooks returns the certificates whose deploy hook has yet to succeed.
func (s *Store) PendingHooks(ctx context.Context) ([]*Renewal, error) {
	return s.queryRenewals(ctx, "pending hooks", pendingHooksSQL)
}

// SetRenewAt records when a scheduled certificate is to be renewed.
func (s *Store) SetRenewAt(ctx context.Context, id int64, at time.Time) error {
	return s.renewalUpdate(ctx, "set renew time", id, RenewalScheduled, setRenewAtSQL, formatTime(at), formatTime(s.now()), id)
}

// ForceRenewal makes a scheduled certificate due now, clearing any back-off.
func (s *Store) ForceRenewal(ctx context.Context, id int64) error {
	now := formatTime(s.now())
	return s.renewalUpdate(ctx, "force renewal", id, RenewalScheduled, forceRenewalSQL, now, now, id)
}

// ClaimRenewal moves a scheduled certificate to renewing. It is the
// compare-and-set that keeps two renewers (csrd, csrctl, or one of them
// before and after a crash) from renewing one certificate twice: only one
// claim succeeds; the others get a *RenewalStateError.
func (s *Store) ClaimRenewal(ctx context.Context, id int64) error {
	return s.renewalUpdate(ctx, "claim renewal", id, RenewalScheduled, claimRenewalSQL, formatTime(s.now()), id)
}

// RetryRenewal counts another attempt at a renewal already renewing (a
// resumed one).
func (s *Store) RetryRenewal(ctx context.Context, id int64) error {
	return s.renewalUpdate(ctx, "retry renewal", id, RenewalRenewing, retryRenewingSQL, formatTime(s.now()), id)
}

// SetRenewalKey records the new key of a renewing certificate, once.
func (s *Store) SetRenewalKey(ctx context.Context, id, newID int64) error {
	return s.renewalUpdate(ctx, "set renewal key", id, RenewalRenewing, renewalKeySQL, newID, formatTime(s.now()), id, newID)
}

// DeferRenewal keeps a renewal in state st and tries it again at next.
func (s *Store) DeferRenewal(ctx context.Context, id int64, st RenewalState, msg string, next time.Time) error {
	return s.renewalUpdate(ctx, "defer renewal", id, st, deferRenewalSQL, formatTime(next), nullString(msg), formatTime(s.now()), id, st)
}

// ReleaseRenewal gives up a renewing attempt that made no key worth
// keeping (the policy refused it): back to scheduled, tried again at next.
func (s *Store) ReleaseRenewal(ctx context.Context, id int64, msg string, next time.Time) error {
	return s.renewalUpdate(ctx, "release renewal", id, RenewalRenewing, releaseRenewSQL, formatTime(next), nullString(msg), formatTime(s.now()), id)
}

// HookDone records that the deploy hook succeeded for record id.
func (s *Store) HookDone(ctx context.Context, id int64) error {
	return s.hookUpdate(ctx, "hook done", hookDoneSQL, formatTime(s.now()), id)
}

// HookFailed records a failed deploy hook, to be run again at next.
func (s *Store) HookFailed(ctx context.Context, id int64, msg string, next time.Time) error {
	return s.hookUpdate(ctx, "hook failed", hookFailedSQL, nullString(msg), formatTime(next), formatTime(s.now()), id)
}

// MarkRenewalRetired records that a renewed certificate's old key is gone.
func (s *Store) MarkRenewalRetired(ctx context.Context, id int64) error {
	return s.renewalUpdate(ctx, "renewal retired", id, RenewalRenewed, retiredSQL, formatTime(s.now()), id)
}

func (s *Store) hookUpdate(ctx context.Context, op, query string, args ...any) error {
	return s.withTx(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, query, args...)
		return dbErr(op, err)
	})
}

// renewalUpdate runs a compare-and-set UPDATE of a renewal in state want
// and explains a miss.
func (s *Store) renewalUpdate(ctx context.Context, op string, id int64, want RenewalState, query string, args ...any) error {
	return s.withTx(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return dbErr(op, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return dbErr(op, err)
		}
		r, err := scanRenewal(tx.QueryRowContext(ctx, getRenewalSQL, id))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("%w: no certificate enrolled by csrd for key %d", ErrNotFound, id)
		case err != nil:
			return dbErr(op, err)
		case r.State == want:
			return fmt.Errorf("%w: the renewal of key %d already has new key %d", ErrConflict, id, r.NewRecordID)
		}
		return &RenewalStateError{RecordID: id, State: r.State, Want: want}
	})
}

func (s *Store) queryRenewals(ctx context.Context, op, query string, args ...any) ([]*Renewal, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, dbErr(op, err)
	}
	defer rows.Close()
	var out []*Renewal
	for rows.Next() {
		r, err := scanRenewal(rows)
		if err != nil {
			return nil, dbErr(op, err)
		}
		out = append(out, r)
	}
	return out, dbErr(op, rows.Err())
}

func scanRenewal(row rowScanner) (*Renewal, error) {
	var (
		r                       Renewal
		renewAt, retireAt, next sql.NullString
		hook, msg               sql.NullString
		newID                   sql.NullInt64
		updated                 string
	)
	if err := row.Scan(&r.RecordID, &r.CA, &r.State, &renewAt, &newID, &retireAt, &hook, &r.Attempts, &next, &msg, &updated); err != nil {
		return nil, err
	}
	r.NewRecordID, r.HookPending, r.LastError = newID.Int64, hook.String == "pending", msg.String
	var err error
	for _, tv := range []struct {
		dst *time.Time
		src sql.NullString
	}{{&r.RenewAt, renewAt}, {&r.RetireAt, retireAt}, {&r.NextAttempt, next}} {
		if tv.src.Valid {
			if *tv.dst, err = parseTime(tv.src.String); err != nil {
				return nil, err
			}
		}
	}
	r.Updated, err = parseTime(updated)
	return &r, err
}

const (
	renewalKeysSQL   = `SELECT ` + keyColumns + ` FROM keys WHERE renewal_of = ? ORDER BY id`
	marriedExpirySQL = `SELECT cert_not_after FROM keys WHERE state = 'married' AND cert_not_after IS NOT NULL`
)

// RenewalKeys returns the records made to renew record id's certificate
// (keys.renewal_of), oldest first.
func (s *Store) RenewalKeys(ctx context.Context, id int64) ([]*KeyRecord, error) {
	return s.queryKeys(ctx, "renewal keys", renewalKeysSQL, id)
}

// MarriedNotAfter returns the expiry of every married certificate.
func (s *Store) MarriedNotAfter(ctx context.Context) ([]time.Time, error) {
	rows, err := s.query(ctx, marriedExpirySQL)
	if err != nil {
		return nil, dbErr("married expiry", err)
	}
	defer rows.Close()
	var out []time.Time
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, dbErr("married expiry", err)
		}
		t, err := parseTime(v)
		if err != nil {
			return nil, dbErr("married expiry", err)
		}
		out = append(out, t)
	}
	return out, dbErr("married expiry", rows.Err())
}
