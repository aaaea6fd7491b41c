package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// AuditEntry is one row of the audit log. Callers fill in what happened;
// AppendAudit sets ID, Time, PrevHash and Hash.
type AuditEntry struct {
	ID         int64
	Time       string // RFC 3339 UTC as stored (the hash covers this text)
	Actor      string // identity name; for a failed login the name it claimed
	AuthMethod string // basic, bearer, mtls, none, or "" when none was presented
	Source     string // client IP address
	Operation  string // e.g. generate, pending_delete
	Result     string // one of the AuditResult* constants
	Status     int    // HTTP status answered
	RecordID   int64  // key record concerned, 0 if none
	KeyLabel   string // token label of that key, "" if none
	RequestID  string
	Detail     string // csrd ErrorCode or a short reason; never secrets
	PrevHash   string
	Hash       string
}

// Audit results.
const (
	AuditOK              = "ok"
	AuditRefused         = "refused" // the request was invalid or the policy said no
	AuditUnauthenticated = "unauthenticated"
	AuditForbidden       = "forbidden"
	AuditThrottled       = "throttled"
	AuditError           = "error" // the server failed
)

// ErrAuditTampered: the audit chain does not verify (a row was edited,
// deleted or inserted out of band). Returned as *AuditChainError.
var ErrAuditTampered = errors.New("store: audit log tampered")

// AuditChainError says where verification first failed.
type AuditChainError struct {
	ID     int64 // row id at (or after) which the chain breaks
	Reason string
}

func (e *AuditChainError) Error() string {
	return fmt.Sprintf("store: audit log tampered at row %d: %s", e.ID, e.Reason)
}

// Unwrap makes errors.Is(err, ErrAuditTampered) hold.
func (e *AuditChainError) Unwrap() error { return ErrAuditTampered }

// AuditReport is the result of a successful verification.
type AuditReport struct {
	Rows   int64
	LastID int64
	Head   string // hash of the last row; record it elsewhere to detect truncation
	// Checkpoints are every signed checkpoint, oldest first, each marked
	// InLog when the snapshot verified has the row it signed. Whether the
	// signatures hold, and under which key, is package checkpoint's to say.
	Checkpoints []AuditCheckpoint
}

// genesisHash is prev_hash of the first row.
var genesisHash = strings.Repeat("0", 64)

const (
	auditColumns = `id, time, actor, auth_method, source, operation, result, status, record_id,
    key_label, request_id, detail, prev_hash, hash`
	auditSeqSQL = `SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'audit'), 0)`
	// auditSeqHeadSQL is auditSeqSQL with the hash of the row the sequence
	// names (see dialect.auditSeqTxSQL).
	auditSeqHeadSQL = `SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'audit'), 0),
    (SELECT hash FROM audit WHERE id = (SELECT seq FROM sqlite_sequence WHERE name = 'audit'))`
	auditHeadSQL   = `SELECT hash FROM audit ORDER BY id DESC LIMIT 1`
	insertAuditSQL = `INSERT INTO audit (` + auditColumns + `)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	listAuditSQL   = `SELECT ` + auditColumns + ` FROM audit WHERE id > ? ORDER BY id LIMIT ?`
	countAuditSQL  = `SELECT COUNT(*) FROM audit`
	auditByHashSQL = `SELECT id FROM audit WHERE hash = ?`
)

// AppendAudit appends e to the chain in one write transaction: the new id
// is the AUTOINCREMENT sequence plus one (never a deleted row's id) and
// prev_hash the hash of the last row.
func (s *Store) AppendAudit(ctx context.Context, e *AuditEntry) error {
	if err := checkAudit(e); err != nil {
		return err
	}
	return s.withTx(ctx, "append audit", func(ctx context.Context, tx *sql.Tx) error { return s.appendAuditTx(ctx, tx, e) })
}

func checkAudit(e *AuditEntry) error {
	if e == nil || e.Operation == "" || e.Result == "" {
		return errors.New("store: append audit: operation and result are required")
	}
	return nil
}

// appendAuditTx appends e inside tx, so a write that carries its own audit
// row (CompleteKey) commits both or neither. Rows appended earlier in the
// same group commit are visible here, so the chain stays linear.
func (s *Store) appendAuditTx(ctx context.Context, tx *sql.Tx, e *AuditEntry) error {
	const op = "append audit"
	var seq int64
	var head sql.NullString
	if err := s.txQueryRow(ctx, tx, s.d.auditSeqTxSQL).Scan(&seq, &head); err != nil {
		return dbErr(op, err)
	}
	prev := head.String
	if !head.Valid {
		var err error
		if prev, err = s.auditHead(ctx, tx); err != nil {
			return err
		}
	}
	row := *e
	row.ID, row.Time, row.PrevHash = seq+1, formatTime(s.now()), prev
	row.Hash = row.chainHash()
	if _, err := s.txExec(ctx, tx, insertAuditSQL, row.ID, row.Time, row.Actor, row.AuthMethod,
		row.Source, row.Operation, row.Result, row.Status, nullInt64(row.RecordID), nullString(row.KeyLabel),
		row.RequestID, nullString(row.Detail), row.PrevHash, row.Hash); err != nil {
		return dbErr(op, err)
	}
	*e = row
	return nil
}

// auditHead is the hash of the last row, or the genesis hash of an empty
// log: what a new row chains to when the sequence's own row was not read
// with it.
func (s *Store) auditHead(ctx context.Context, tx *sql.Tx) (string, error) {
	var prev string
	switch err := s.txQueryRow(ctx, tx, auditHeadSQL).Scan(&prev); {
	case errors.Is(err, sql.ErrNoRows):
		return genesisHash, nil
	case err != nil:
		return "", dbErr("append audit", err)
	}
	return prev, nil
}

// chainHash is SHA-256 over a length-prefixed encoding of every field but
// Hash, so no two different rows share an encoding.
func (e *AuditEntry) chainHash() string {
	h := sha256.New()
	h.Write([]byte("csrd-audit-v1"))
	for _, f := range []string{
		strconv.FormatInt(e.ID, 10), e.Time, e.Actor, e.AuthMethod, e.Source, e.Operation, e.Result,
		strconv.Itoa(e.Status), strconv.FormatInt(e.RecordID, 10), e.KeyLabel, e.RequestID, e.Detail, e.PrevHash,
	} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// VerifyAudit walks the whole chain: ids consecutive from 1, each prev_hash
// the previous row's hash, each hash recomputed from the row, and the
// AUTOINCREMENT sequence equal to the last id (a deleted tail). The first
// failure is returned as *AuditChainError. It also returns the signed
// checkpoints, each marked whether its row is in the log as signed.
//
// Everything is read in one read transaction, i.e. one snapshot: rows
// appended while it runs (by csrd, or csrctl in another process) are not
// seen at all, rather than seen in the sequence but not among the rows —
// which would read as a truncated log.
func (s *Store) VerifyAudit(ctx context.Context) (rep AuditReport, err error) {
	const op = "verify audit"
	tx, err := s.r.BeginTx(ctx, s.d.snapshot) // one snapshot for every SELECT (dialect.snapshot)
	if err != nil {
		return rep, dbErr(op, err)
	}
	defer func() { _ = tx.Rollback() }() // read-only: nothing to commit
	if rep.Checkpoints, err = listCheckpoints(ctx, tx); err != nil {
		return rep, err
	}
	signed := newCheckpointIndex(rep.Checkpoints)
	prev := genesisHash
	const page = 1000
	for {
		rows, err := listAudit(ctx, tx, rep.LastID, page)
		if err != nil {
			return rep, err
		}
		for _, r := range rows {
			switch {
			case r.ID != rep.LastID+1:
				return rep, &AuditChainError{ID: rep.LastID + 1, Reason: fmt.Sprintf("rows %d to %d are missing", rep.LastID+1, r.ID-1)}
			case r.PrevHash != prev:
				return rep, &AuditChainError{ID: r.ID, Reason: "prev_hash does not match the previous row (a row before it was edited or removed)"}
			case r.chainHash() != r.Hash:
				return rep, &AuditChainError{ID: r.ID, Reason: "the row's content does not match its hash (the row was edited)"}
			}
			prev, rep.LastID, rep.Head = r.Hash, r.ID, r.Hash
			rep.Rows++
			signed.row(r.ID, r.Hash)
		}
		if len(rows) < page {
			break
		}
	}
	if s.afterAuditRows != nil {
		s.afterAuditRows()
	}
	var seq int64
	if err := tx.QueryRowContext(ctx, s.d.auditSeqSQL).Scan(&seq); err != nil {
		return rep, dbErr(op, err)
	}
	if seq != rep.LastID {
		return rep, &AuditChainError{ID: rep.LastID + 1, Reason: fmt.Sprintf("rows %d to %d are missing (the log was truncated)", rep.LastID+1, seq)}
	}
	return rep, nil
}

// ListAudit returns up to limit rows with id > after, in id order.
func (s *Store) ListAudit(ctx context.Context, after int64, limit int) ([]*AuditEntry, error) {
	return listAudit(ctx, s.r, after, limit)
}

// querier is what reads need: the read pool, or one read transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func listAudit(ctx context.Context, q querier, after int64, limit int) ([]*AuditEntry, error) {
	const op = "list audit"
	rows, err := q.QueryContext(ctx, listAuditSQL, after, limit)
	if err != nil {
		return nil, dbErr(op, err)
	}
	defer rows.Close()
	var out []*AuditEntry
	for rows.Next() {
		var (
			e                AuditEntry
			recordID         sql.NullInt64
			keyLabel, detail sql.NullString
		)
		if err := rows.Scan(&e.ID, &e.Time, &e.Actor, &e.AuthMethod, &e.Source, &e.Operation, &e.Result,
			&e.Status, &recordID, &keyLabel, &e.RequestID, &detail, &e.PrevHash, &e.Hash); err != nil {
			return nil, dbErr(op, err)
		}
		e.RecordID, e.KeyLabel, e.Detail = recordID.Int64, keyLabel.String, detail.String
		out = append(out, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr(op, err)
	}
	return out, nil
}

// CountAudit returns the number of audit rows.
func (s *Store) CountAudit(ctx context.Context) (int64, error) {
	var n int64
	if err := s.r.QueryRowContext(ctx, countAuditSQL).Scan(&n); err != nil {
		return 0, dbErr("count audit", err)
	}
	return n, nil
}

// AuditIDByHash returns the id of the row whose hash is hash (a head hash
// recorded earlier), or an error matching ErrNotFound.
func (s *Store) AuditIDByHash(ctx context.Context, hash string) (int64, error) {
	var id int64
	err := s.r.QueryRowContext(ctx, auditByHashSQL, strings.ToLower(hash)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%w: audit row with hash %s", ErrNotFound, hash)
	}
	if err != nil {
		return 0, dbErr("find audit row", err)
	}
	return id, nil
}

func nullInt64(n int64) any {
	if n == 0 {
		return nil
	}
	return n
}
