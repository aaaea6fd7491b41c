package store

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// KeyRecord is one row of keys: a token key and what csrd knows about it.
// Empty strings, nil slices and zero numbers are stored as NULL.
type KeyRecord struct {
	ID          int64 // also the Keyfactor request Id; 1..2^31-1, never reused
	RequestTime time.Time
	UpdatedTime time.Time
	State       State

	KeyLabel    string // CKA_LABEL on the token, derived from ID; unique
	KeyID       []byte // CKA_ID; stored as lower-case hex, unique when set
	TokenLabel  string
	TokenSerial string

	KeyType string // e.g. "RSA", "ECDSA"
	KeySize int    // bits, for RSA
	Curve   string // for ECDSA

	SPKISHA256 []byte   // SHA-256 of the DER SubjectPublicKeyInfo; stored hex, indexed
	Subject    string   // DN as RFC 4514 text
	SANs       []string // csr.SANs.Strings() form; stored as a JSON array

	Template            string
	EnrollmentPatternID int
	Decision            json.RawMessage // the policy decision, as JSON

	CSRPEM     string
	FailReason string // why the record became failed (or lost, deleted)

	// Intent is a token operation committed but perhaps not finished
	// (IntentNone when there is none); see intent.go.
	Intent Intent
	// Cert is the certificate married to the key (or, with IntentMarry, being
	// married); its DER is nil when there is none.
	Cert        CertInfo
	MarriedTime time.Time

	// The alternative (post-quantum) key of a hybrid CSR; all zero without
	// one. See AltStorage.
	AltKeyType    string     // e.g. "ML-DSA-65"
	AltKeyStorage AltStorage // "" when there is no alternative key
	AltKeyLabel   string     // AltStorageToken: CKA_LABEL, KeyLabel + AltLabelSuffix (set by BeginKey)
	AltKeyID      []byte     // AltStorageToken: CKA_ID; stored hex, unique
	AltSealedSeed []byte     // AltStorageSealed: the sealed seed (set by CompleteHybridKey)
	AltSPKISHA256 []byte     // SHA-256 of the alternative SubjectPublicKeyInfo

	// KeyUsage is what the key may do, as its token's profile says, when
	// the token could not restrict it to signing (hsm.require_sign_only
	// false); set by BeginKey, "" for every other key, which may only sign.
	// csrd only ever signs with it.
	KeyUsage string

	// Node is the node whose lease covers the record's unfinished work:
	// the one that began its generation or its intent ("" for none; set
	// by the Store from WithNode).
	Node string

	// RenewalOf is the record whose certificate this key's renews (0: none).
	RenewalOf int64
}

const keyColumns = `id, request_time, updated_time, state, key_label, key_id, token_label, token_serial,
    key_type, key_size, curve, spki_sha256, subject, sans, template, enrollment_pattern_id,
    decision, csr_pem, fail_reason, intent, cert_der, cert_chain_pem, cert_serial, cert_issuer,
    cert_subject, cert_thumbprint, cert_not_before, cert_not_after, married_time, ` + altColumns + usageColumns + `, node, renewal_of`

const (
	// insertKeySQL inserts without a label: on SQLite the label is derived
	// from the id, which exists only after the insert (RETURNING it: pgx
	// has no LastInsertId), and set by setKeyLabelSQL in the same
	// transaction. PostgreSQL inserts both at once (insertLabelledKeySQL).
	insertKeySQL = `INSERT INTO keys (request_time, updated_time, state, key_label, key_id,
    token_label, token_serial, key_type, key_size, curve, subject, sans, template,
    enrollment_pattern_id, decision, node, key_usage)
VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING id`
	setKeyLabelSQL = `UPDATE keys SET key_label = ? || id WHERE id = ? RETURNING key_label`
	// insertLabelledKeySQL draws the id from the table's sequence first, so
	// the label (the prefix, then the id) is in the row as it is inserted:
	// one round trip to the server instead of two. The CTE holds a volatile
	// function, so PostgreSQL evaluates it once.
	insertLabelledKeySQL = `WITH n AS (SELECT nextval(pg_get_serial_sequence('keys', 'id')) AS id)
INSERT INTO keys (id, key_label, request_time, updated_time, state, key_id,
    token_label, token_serial, key_type, key_size, curve, subject, sans, template,
    enrollment_pattern_id, decision, node, key_usage)
VALUES ((SELECT id FROM n), CAST(? AS text) || (SELECT id FROM n), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING id, key_label`
	// setRenewalOfSQL runs only for a renewal's key: the column stays out
	// of every other Generate's INSERT (and so of its prepared form).
	setRenewalOfSQL = `UPDATE keys SET renewal_of = ? WHERE id = ?`

	// completeKeySQL and transitionSQL are compare-and-set: the state
	// condition makes a concurrent or repeated transition affect no row.
	completeKeySQL = `UPDATE keys SET state = ?, updated_time = ?, csr_pem = ?, spki_sha256 = ?
WHERE id = ? AND state = ? RETURNING key_label`
	keyLabelSQL = `SELECT key_label FROM keys WHERE id = ?`
	// The from-states arrive as one JSON array so the SQL stays constant.
	transitionSQL = `UPDATE keys SET state = ?, updated_time = ?, fail_reason = COALESCE(?, fail_reason)
WHERE id = ? AND state IN (SELECT value FROM json_each(?))`
	keyStateSQL = `SELECT state FROM keys WHERE id = ?`

	getKeySQL       = `SELECT ` + keyColumns + ` FROM keys WHERE id = ?`
	listByStateSQL  = `SELECT ` + keyColumns + ` FROM keys WHERE state = ? ORDER BY id`
	findBySPKISQL   = `SELECT ` + keyColumns + ` FROM keys WHERE spki_sha256 = ? ORDER BY id`
	countByStateSQL = `SELECT state, COUNT(*) FROM keys GROUP BY state`
	countByTokenSQL = `SELECT COALESCE(token_label, ''), COUNT(*) FROM keys WHERE state = ? GROUP BY token_label`
)

// BeginKey inserts rec as generating with the key label labelPrefix
// followed by its id (lifecycle.Label's form), in one transaction, so no
// committed record lacks a label and no label is chosen before its id is
// known. It fills in rec.ID, rec.KeyLabel, rec.State, rec.UpdatedTime and,
// when zero, rec.RequestTime (now, UTC). rec.SPKISHA256, CSRPEM and
// FailReason are ignored: transitions set them. A label or key id already
// in use matches ErrConflict.
func (s *Store) BeginKey(ctx context.Context, rec *KeyRecord, labelPrefix string) (int64, error) {
	sans, err := checkBegin(rec, labelPrefix)
	if err != nil {
		return 0, err
	}
	now := s.now()
	requested := rec.RequestTime
	if requested.IsZero() {
		requested = now
	}
	var id int64
	var lbl string
	err = s.withTx(ctx, "begin key", func(ctx context.Context, tx *sql.Tx) error {
		var err error
		id, lbl, err = s.insertKey(ctx, tx, labelPrefix,
			formatTime(requested), formatTime(now), StateGenerating, nullHex(rec.KeyID),
			nullString(rec.TokenLabel), nullString(rec.TokenSerial), nullString(rec.KeyType),
			nullInt(rec.KeySize), nullString(rec.Curve), nullString(rec.Subject), sans,
			nullString(rec.Template), nullInt(rec.EnrollmentPatternID), nullJSON(rec.Decision), nullString(s.node),
			nullString(rec.KeyUsage))
		if isUnique(err) {
			return fmt.Errorf("%w: key id %x or its label already in use", ErrConflict, rec.KeyID)
		}
		if err != nil {
			return dbErr("begin key", err)
		}
		return beginLinks(ctx, tx, id, lbl, rec)
	})
	if err != nil {
		return 0, err
	}
	rec.ID, rec.KeyLabel, rec.State, rec.Node = id, lbl, StateGenerating, s.node
	rec.RequestTime, rec.UpdatedTime = requested.UTC(), now
	return id, nil
}

// insertKey inserts a record with args (insertKeySQL's, in its order) and
// the label prefix followed by its id, in one statement where the dialect
// has one.
func (s *Store) insertKey(ctx context.Context, tx *sql.Tx, prefix string, args ...any) (id int64, label string, err error) {
	if s.d.insertLabelledKeySQL != "" {
		err = s.txQueryRow(ctx, tx, s.d.insertLabelledKeySQL, append([]any{prefix}, args...)...).Scan(&id, &label)
		return id, label, err
	}
	if err = s.txQueryRow(ctx, tx, insertKeySQL, args...).Scan(&id); err != nil {
		return 0, "", err
	}
	err = s.txQueryRow(ctx, tx, setKeyLabelSQL, prefix, id).Scan(&label)
	return id, label, err
}

// checkBegin refuses a record BeginKey cannot insert and returns its SANs
// encoded for the row.
func checkBegin(rec *KeyRecord, labelPrefix string) (any, error) {
	if rec == nil || labelPrefix == "" {
		return nil, errors.New("store: begin key: record and label prefix are required")
	}
	if len(rec.Decision) > 0 && !json.Valid(rec.Decision) {
		return nil, errors.New("store: begin key: decision is not valid JSON")
	}
	if err := checkAlt(rec); err != nil {
		return nil, err
	}
	return encodeSANs(rec.SANs)
}

// beginLinks records, with a new record, what it is linked to: the record
// whose certificate it renews and its alternative key.
func beginLinks(ctx context.Context, tx *sql.Tx, id int64, label string, rec *KeyRecord) error {
	if err := setRenewalOf(ctx, tx, id, rec.RenewalOf); err != nil {
		return err
	}
	return beginAlt(ctx, tx, id, label, rec)
}

// setRenewalOf links a renewal's new record to the one it renews.
func setRenewalOf(ctx context.Context, tx *sql.Tx, id, of int64) error {
	if of == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, setRenewalOfSQL, of, id); err != nil {
		return dbErr("begin key", err)
	}
	return nil
}

// CompleteKey records the CSR and the public key hash and moves the record
// from generating to pending. A non-nil audit row is appended in the same
// transaction, with RecordID and KeyLabel filled in from the record: the
// request that made the key is on the audit chain exactly when its record
// is pending, and a Generate costs one commit fewer.
func (s *Store) CompleteKey(ctx context.Context, id int64, csrPEM string, spkiSHA256 []byte, audit *AuditEntry) error {
	if csrPEM == "" || len(spkiSHA256) != 32 {
		return fmt.Errorf("store: complete key %d: a CSR and a 32-byte SPKI SHA-256 are required", id)
	}
	if audit != nil {
		if err := checkAudit(audit); err != nil {
			return err
		}
	}
	return s.withTx(ctx, "complete key", func(ctx context.Context, tx *sql.Tx) error {
		label, err := s.completeTx(ctx, tx, id, csrPEM, spkiSHA256)
		if err != nil {
			return err
		}
		return s.recordAuditAs(ctx, tx, id, label, audit)
	})
}

// completeTx is CompleteKey's compare-and-set inside tx. It returns the
// record's stored label, which the audit row names: the UPDATE returns it,
// one round trip fewer on the path of every Generate.
func (s *Store) completeTx(ctx context.Context, tx *sql.Tx, id int64, csrPEM string, spkiSHA256 []byte) (string, error) {
	t := transition{op: "complete key", id: id, from: []State{StateGenerating}, to: StatePending}
	var label string
	err := s.txQueryRow(ctx, tx, completeKeySQL,
		StatePending, formatTime(s.now()), csrPEM, hex.EncodeToString(spkiSHA256), id, StateGenerating).Scan(&label)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", s.blocked(ctx, tx, t)
	case err != nil:
		return "", dbErr(t.op, err)
	}
	return label, nil
}

// recordAudit appends, inside the write that changes record id, the audit
// row of that change (if any), naming the record and its key label as
// stored.
func (s *Store) recordAudit(ctx context.Context, tx *sql.Tx, id int64, audit *AuditEntry) error {
	if audit == nil {
		return nil
	}
	var label string
	if err := s.txQueryRow(ctx, tx, keyLabelSQL, id).Scan(&label); err != nil {
		return dbErr("audit record change", err)
	}
	return s.recordAuditAs(ctx, tx, id, label, audit)
}

// recordAuditAs is recordAudit with the record's stored label already read.
func (s *Store) recordAuditAs(ctx context.Context, tx *sql.Tx, id int64, label string, audit *AuditEntry) error {
	if audit == nil {
		return nil
	}
	audit.RecordID, audit.KeyLabel = id, label
	return s.appendAuditTx(ctx, tx, audit)
}

// FailKey moves the record from generating to failed, recording why. Only a
// generating record can fail: once pending, the key exists and leaves only
// by deletion or loss. A non-nil audit row is appended in the same
// transaction (RecordID and KeyLabel filled in): reconciliation, failing a
// generate a crash interrupted, records its own act with the record's
// change.
func (s *Store) FailKey(ctx context.Context, id int64, reason string, audit *AuditEntry) error {
	return s.transition(ctx, id, []State{StateGenerating}, StateFailed, reason, audit)
}

// Transition moves the record from one of the states in from to state to,
// atomically. Every from→to edge must be allowed by the state machine
// (State.CanTransition); asking for another is a programming error and is
// not ErrConflict. A non-empty reason is stored in fail_reason. A record in
// another state yields a *TransitionError (matches ErrConflict).
func (s *Store) Transition(ctx context.Context, id int64, from []State, to State, reason string) error {
	return s.transition(ctx, id, from, to, reason, nil)
}

// transition is Transition with the audit row (if any) of the change
// appended in its transaction.
func (s *Store) transition(ctx context.Context, id int64, from []State, to State, reason string, audit *AuditEntry) error {
	if len(from) == 0 {
		return fmt.Errorf("store: transition to %s: no from-state given", to)
	}
	for _, f := range from {
		if !f.CanTransition(to) {
			return fmt.Errorf("store: transition %s -> %s is not allowed", f, to)
		}
	}
	fromJSON, err := json.Marshal(from)
	if err != nil {
		return fmt.Errorf("store: transition: %w", err)
	}
	if audit != nil {
		if err := checkAudit(audit); err != nil {
			return err
		}
	}
	op := "transition to " + string(to)
	return s.withTx(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		res, err := s.txExec(ctx, tx, transitionSQL, to, formatTime(s.now()), nullString(reason), id, string(fromJSON))
		if err := s.checkTransition(ctx, tx, transition{op: op, id: id, from: from, to: to}, res, err); err != nil {
			return err
		}
		return s.recordAudit(ctx, tx, id, audit)
	})
}

// transition is a compare-and-set change of record id from one of the
// states from to state to, by operation op.
type transition struct {
	op   string
	id   int64
	from []State
	to   State
}

// checkTransition turns the outcome (res, err) of t's compare-and-set
// UPDATE, when it matched no row, into ErrNotFound or a *TransitionError
// (see blocked).
func (s *Store) checkTransition(ctx context.Context, tx *sql.Tx, t transition, res sql.Result, err error) error {
	if err != nil {
		return dbErr(t.op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return dbErr(t.op, err)
	}
	if n == 1 {
		return nil
	}
	return s.blocked(ctx, tx, t)
}

// blocked explains why t's compare-and-set matched no row: ErrNotFound or
// a *TransitionError, looking the record up in the same transaction so the
// reported state is the one that blocked the update.
func (s *Store) blocked(ctx context.Context, tx *sql.Tx, t transition) error {
	var cur State
	switch err := s.txQueryRow(ctx, tx, keyStateSQL, t.id).Scan(&cur); {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: key %d", ErrNotFound, t.id)
	case err != nil:
		return dbErr(t.op, err)
	}
	return &TransitionError{ID: t.id, State: cur, From: t.from, To: t.to}
}

// Get returns the record with the given id, or an error matching ErrNotFound.
func (s *Store) Get(ctx context.Context, id int64) (*KeyRecord, error) {
	rec, err := scanKey(s.queryRow(ctx, getKeySQL, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: key %d", ErrNotFound, id)
	}
	if err != nil {
		return nil, dbErr("get key", err)
	}
	return rec, nil
}

// ListByState returns the records in state st, oldest id first.
func (s *Store) ListByState(ctx context.Context, st State) ([]*KeyRecord, error) {
	if !st.Valid() {
		return nil, fmt.Errorf("store: list keys: unknown state %q", st)
	}
	return s.queryKeys(ctx, "list keys", listByStateSQL, st)
}

// FindBySPKI returns the records whose public key hashes to spkiSHA256,
// oldest id first — normally zero or one; more would mean the same key
// generated twice. Used to marry an imported certificate to its key.
func (s *Store) FindBySPKI(ctx context.Context, spkiSHA256 []byte) ([]*KeyRecord, error) {
	if len(spkiSHA256) != 32 {
		return nil, fmt.Errorf("store: find by SPKI: hash is %d bytes, want 32", len(spkiSHA256))
	}
	return s.queryKeys(ctx, "find by SPKI", findBySPKISQL, hex.EncodeToString(spkiSHA256))
}

// CountByState returns the number of records in each state; every known
// state is present, with 0 when it has no records.
func (s *Store) CountByState(ctx context.Context) (map[State]int, error) {
	rows, err := s.query(ctx, countByStateSQL)
	if err != nil {
		return nil, dbErr("count keys", err)
	}
	defer rows.Close()
	counts := make(map[State]int, len(States()))
	for _, st := range States() {
		counts[st] = 0
	}
	for rows.Next() {
		var st State
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, dbErr("count keys", err)
		}
		counts[st] = n
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr("count keys", err)
	}
	return counts, nil
}

// CountByToken returns, per token label, the number of records in state st
// (records without a token label count under ""). Tokens with none are absent.
func (s *Store) CountByToken(ctx context.Context, st State) (map[string]int, error) {
	if !st.Valid() {
		return nil, fmt.Errorf("store: count keys by token: unknown state %q", st)
	}
	rows, err := s.query(ctx, countByTokenSQL, st)
	if err != nil {
		return nil, dbErr("count keys by token", err)
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var label string
		var n int
		if err := rows.Scan(&label, &n); err != nil {
			return nil, dbErr("count keys by token", err)
		}
		counts[label] = n
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr("count keys by token", err)
	}
	return counts, nil
}

func (s *Store) queryKeys(ctx context.Context, op, query string, args ...any) ([]*KeyRecord, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, dbErr(op, err)
	}
	defer rows.Close()
	var recs []*KeyRecord
	for rows.Next() {
		rec, err := scanKey(rows)
		if err != nil {
			return nil, dbErr(op, err)
		}
		recs = append(recs, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr(op, err)
	}
	return recs, nil
}

// scanKey reads one row in keyColumns order from a *sql.Row or *sql.Rows.
func scanKey(row interface{ Scan(...any) error }) (*KeyRecord, error) {
	var (
		rec                                            KeyRecord
		requested, updated                             string
		label, keyID, tokLabel, tokSerial, keyType     sql.NullString
		curve, spki, subject, sans, template, decision sql.NullString
		csrPEM, failReason                             sql.NullString
		keySize, patternID, renewalOf                  sql.NullInt64
		intent, chain, serial, issuer, certSubject     sql.NullString
		thumb, notBefore, notAfter, married            sql.NullString
		node                                           sql.NullString
		alt                                            altScan
		usage                                          sql.NullString
	)
	dests := append([]any{&rec.ID, &requested, &updated, &rec.State, &label, &keyID, &tokLabel,
		&tokSerial, &keyType, &keySize, &curve, &spki, &subject, &sans, &template, &patternID,
		&decision, &csrPEM, &failReason, &intent, &rec.Cert.DER, &chain, &serial, &issuer,
		&certSubject, &thumb, &notBefore, &notAfter, &married}, append(alt.dests(), &usage, &node, &renewalOf)...)
	if err := row.Scan(dests...); err != nil {
		return nil, err
	}
	rec.KeyUsage = usage.String
	if err := alt.fill(&rec); err != nil {
		return nil, err
	}
	rec.Intent = Intent(intent.String)
	rec.Cert.ChainPEM, rec.Cert.Serial, rec.Cert.Issuer = chain.String, serial.String, issuer.String
	rec.Cert.Subject, rec.Cert.Thumbprint = certSubject.String, thumb.String
	var err error
	for _, tv := range []struct {
		dst  *time.Time
		src  sql.NullString
		name string
	}{{&rec.Cert.NotBefore, notBefore, "cert_not_before"}, {&rec.Cert.NotAfter, notAfter, "cert_not_after"}, {&rec.MarriedTime, married, "married_time"}} {
		if tv.src.Valid {
			if *tv.dst, err = parseTime(tv.src.String); err != nil {
				return nil, fmt.Errorf("key %d %s: %w", rec.ID, tv.name, err)
			}
		}
	}
	if rec.RequestTime, err = parseTime(requested); err != nil {
		return nil, fmt.Errorf("key %d request_time: %w", rec.ID, err)
	}
	if rec.UpdatedTime, err = parseTime(updated); err != nil {
		return nil, fmt.Errorf("key %d updated_time: %w", rec.ID, err)
	}
	if rec.KeyID, err = decodeHex(keyID); err != nil {
		return nil, fmt.Errorf("key %d key_id: %w", rec.ID, err)
	}
	if rec.SPKISHA256, err = decodeHex(spki); err != nil {
		return nil, fmt.Errorf("key %d spki_sha256: %w", rec.ID, err)
	}
	if sans.Valid {
		if err := json.Unmarshal([]byte(sans.String), &rec.SANs); err != nil {
			return nil, fmt.Errorf("key %d sans: %w", rec.ID, err)
		}
	}
	if decision.Valid {
		rec.Decision = json.RawMessage(decision.String)
	}
	rec.KeyLabel, rec.TokenLabel, rec.TokenSerial = label.String, tokLabel.String, tokSerial.String
	rec.KeyType, rec.KeySize, rec.Curve = keyType.String, int(keySize.Int64), curve.String
	rec.Subject, rec.Template, rec.EnrollmentPatternID = subject.String, template.String, int(patternID.Int64)
	rec.CSRPEM, rec.FailReason, rec.Node = csrPEM.String, failReason.String, node.String
	rec.RenewalOf = renewalOf.Int64
	return &rec, nil
}
