package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// PendingSort is the order of the pending list.
type PendingSort int

// Pending list orders; ties are broken by id.
const (
	SortByRequestTime PendingSort = iota
	SortByID
)

// PendingQuery selects a page of pending records: those in state pending
// with no operation under way (a key being deleted or married is no longer
// offered as a pending CSR).
type PendingQuery struct {
	// SubjectContains keeps records whose subject DN contains it, ignoring
	// ASCII case; "" keeps all.
	SubjectContains string
	Sort            PendingSort
	Descending      bool
	Limit           int // 1..MaxPageSize
	Offset          int // records to skip, >= 0
	// Scope keeps only the records in it (nil: all), before paging: the
	// pages and the count are those of the records in scope.
	Scope *Scope
}

// MaxPageSize bounds one page of a listing.
const MaxPageSize = 1000

// The pending listing needs one constant per order (ORDER BY cannot be a
// parameter); all four walk the (state, request_time, id) index. instr()
// rather than LIKE, so '%' and '_' in the filter are literal. ?1 is the
// subject filter, ?2 to ?4 the scope (scopeWhere), ?5 and ?6 the page.
const (
	pendingWhere = ` FROM keys WHERE state = 'pending' AND intent IS NULL
    AND (?1 = '' OR instr(lower(subject), lower(?1)) > 0)
    AND ` + scopeWhere
	pendingSelect   = `SELECT ` + keyColumns + pendingWhere
	pendingPage     = ` LIMIT ?5 OFFSET ?6`
	countPendingSQL = `SELECT COUNT(*)` + pendingWhere
)

var pendingSQL = map[PendingSort][2]string{ // [ascending, descending]
	SortByRequestTime: {
		pendingSelect + ` ORDER BY request_time ASC, id ASC` + pendingPage,
		pendingSelect + ` ORDER BY request_time DESC, id DESC` + pendingPage,
	},
	SortByID: {
		pendingSelect + ` ORDER BY id ASC` + pendingPage,
		pendingSelect + ` ORDER BY id DESC` + pendingPage,
	},
}

// ListPending returns one page of pending records.
func (s *Store) ListPending(ctx context.Context, q PendingQuery) ([]*KeyRecord, error) {
	qs, ok := pendingSQL[q.Sort]
	switch {
	case !ok:
		return nil, fmt.Errorf("store: list pending: unknown sort %d", q.Sort)
	case q.Limit < 1 || q.Limit > MaxPageSize:
		return nil, fmt.Errorf("store: list pending: limit %d not in 1..%d", q.Limit, MaxPageSize)
	case q.Offset < 0:
		return nil, fmt.Errorf("store: list pending: negative offset %d", q.Offset)
	}
	query := qs[0]
	if q.Descending {
		query = qs[1]
	}
	scoped, patterns, templates := q.Scope.args()
	return s.queryKeys(ctx, "list pending", query, q.SubjectContains, scoped, patterns, templates, q.Limit, q.Offset)
}

// CountPending returns how many records ListPending would page through for
// q (its subject filter and scope; the page is ignored).
func (s *Store) CountPending(ctx context.Context, q PendingQuery) (int, error) {
	var n int
	scoped, patterns, templates := q.Scope.args()
	if err := s.r.QueryRowContext(ctx, countPendingSQL, q.SubjectContains, scoped, patterns, templates).Scan(&n); err != nil {
		return 0, dbErr("count pending", err)
	}
	return n, nil
}

// KeyQuery selects records for operators: every state unless State is set,
// in id order after AfterID (keyset paging: stable while records are added).
type KeyQuery struct {
	State   State // "" for all
	AfterID int64
	Limit   int // 1..MaxPageSize
}

const (
	listKeysSQL = `SELECT ` + keyColumns + ` FROM keys
WHERE (?1 = '' OR state = ?1) AND id > ?2 ORDER BY id LIMIT ?3`
	findByThumbprintSQL = `SELECT ` + keyColumns + ` FROM keys WHERE cert_thumbprint = ? ORDER BY id`
	findBySerialSQL     = `SELECT ` + keyColumns + ` FROM keys WHERE cert_serial = ? ORDER BY id`
)

// ListKeys returns one page of records.
func (s *Store) ListKeys(ctx context.Context, q KeyQuery) ([]*KeyRecord, error) {
	switch {
	case q.State != "" && !q.State.Valid():
		return nil, fmt.Errorf("store: list keys: unknown state %q", q.State)
	case q.Limit < 1 || q.Limit > MaxPageSize:
		return nil, fmt.Errorf("store: list keys: limit %d not in 1..%d", q.Limit, MaxPageSize)
	}
	return s.queryKeys(ctx, "list keys", listKeysSQL, string(q.State), q.AfterID, q.Limit)
}

// FindByThumbprint returns the records whose certificate has the SHA-1
// thumbprint (hex, any case).
func (s *Store) FindByThumbprint(ctx context.Context, thumbprint string) ([]*KeyRecord, error) {
	return s.queryKeys(ctx, "find by thumbprint", findByThumbprintSQL, strings.ToUpper(thumbprint))
}

// FindBySerial returns the records whose certificate has the serial number
// (hex, any case, leading zeros as the certificate encodes them).
func (s *Store) FindBySerial(ctx context.Context, serial string) ([]*KeyRecord, error) {
	return s.queryKeys(ctx, "find by serial", findBySerialSQL, strings.ToUpper(serial))
}

// LiveKey is the part of a record reconciliation compares with the token.
type LiveKey struct {
	ID          int64
	State       State
	Intent      Intent
	KeyLabel    string
	KeyID       []byte
	TokenLabel  string
	TokenSerial string
	UpdatedTime time.Time
	HasCert     bool
	// AltKeyLabel and AltKeyID name a token-resident alternative key
	// (AltStorageToken); empty otherwise.
	AltKeyLabel string
	AltKeyID    []byte
	Node        string // see KeyRecord.Node
}

// listLiveSQL reads only what reconciliation needs, so that comparing a
// large database with the token stays one light pass.
const listLiveSQL = `SELECT id, state, intent, key_label, key_id, token_label, token_serial, updated_time,
    cert_der IS NOT NULL, alt_key_label, alt_key_id, node
FROM keys WHERE state IN ('generating', 'pending', 'married') ORDER BY id`

// ListLive returns every record whose key should be in a token: generating,
// pending and married ones.
func (s *Store) ListLive(ctx context.Context) ([]LiveKey, error) {
	const op = "list live keys"
	rows, err := s.r.QueryContext(ctx, listLiveSQL)
	if err != nil {
		return nil, dbErr(op, err)
	}
	defer rows.Close()
	var out []LiveKey
	for rows.Next() {
		var (
			k                            LiveKey
			intent, label, keyID, tl, ts sql.NullString
			altLabel, altID, node        sql.NullString
			updated                      string
		)
		if err := rows.Scan(&k.ID, &k.State, &intent, &label, &keyID, &tl, &ts, &updated, &k.HasCert, &altLabel, &altID, &node); err != nil {
			return nil, dbErr(op, err)
		}
		if k.UpdatedTime, err = parseTime(updated); err != nil {
			return nil, fmt.Errorf("store: %s: key %d updated_time: %w", op, k.ID, err)
		}
		if k.KeyID, err = decodeHex(keyID); err != nil {
			return nil, fmt.Errorf("store: %s: key %d key_id: %w", op, k.ID, err)
		}
		if k.AltKeyID, err = decodeHex(altID); err != nil {
			return nil, fmt.Errorf("store: %s: key %d alt_key_id: %w", op, k.ID, err)
		}
		k.AltKeyLabel, k.Node = altLabel.String, node.String
		k.Intent, k.KeyLabel, k.TokenLabel, k.TokenSerial = Intent(intent.String), label.String, tl.String, ts.String
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr(op, err)
	}
	return out, nil
}
