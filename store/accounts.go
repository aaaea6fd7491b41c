package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Account is a CA's ACME account: where its key pair lives in the token
// and, once registered, its URL (the JWS "kid").
type Account struct {
	CA          string
	TokenLabel  string
	TokenSerial string
	KeyLabel    string
	KeyID       []byte
	URL         string
	Created     time.Time
	Updated     time.Time
}

const (
	accountColumns   = `ca, token_label, token_serial, key_label, key_id, account_url, created_time, updated_time`
	getAccountSQL    = `SELECT ` + accountColumns + ` FROM acme_accounts WHERE ca = ?`
	insertAccountSQL = `INSERT INTO acme_accounts (` + accountColumns + `) VALUES (?, ?, ?, ?, ?, NULL, ?, ?)
ON CONFLICT (ca) DO NOTHING`
	setAccountURLSQL = `UPDATE acme_accounts SET account_url = ?, updated_time = ? WHERE ca = ?`
)

// GetAccount returns the account of CA ca, or an error matching ErrNotFound.
func (s *Store) GetAccount(ctx context.Context, ca string) (*Account, error) {
	a, err := scanAccount(s.queryRow(ctx, getAccountSQL, ca))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: ACME account of CA %q", ErrNotFound, ca)
	}
	if err != nil {
		return nil, dbErr("get account", err)
	}
	return a, nil
}

// BeginAccount records where the account key of a.CA will be generated,
// before it is: no account key exists in the token without a row naming
// it. If the CA already has a row, that row wins and is returned (two
// callers racing to create the account agree on one key).
func (s *Store) BeginAccount(ctx context.Context, a *Account) (*Account, error) {
	if a.CA == "" || a.KeyLabel == "" || len(a.KeyID) == 0 || a.TokenLabel == "" {
		return nil, errors.New("store: begin account: CA, token label, key label and key id are required")
	}
	var out *Account
	err := s.withTx(ctx, "begin account", func(ctx context.Context, tx *sql.Tx) error {
		now := formatTime(s.now())
		if _, err := tx.ExecContext(ctx, insertAccountSQL, a.CA, a.TokenLabel, nullString(a.TokenSerial), a.KeyLabel,
			nullHex(a.KeyID), now, now); err != nil {
			if isUnique(err) {
				return fmt.Errorf("%w: key label %q already in use", ErrConflict, a.KeyLabel)
			}
			return dbErr("begin account", err)
		}
		var err error
		out, err = scanAccount(tx.QueryRowContext(ctx, getAccountSQL, a.CA))
		return dbErr("begin account", err)
	})
	return out, err
}

// SetAccountURL records the account's URL once the CA registered it.
func (s *Store) SetAccountURL(ctx context.Context, ca, url string) error {
	return s.withTx(ctx, "set account url", func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, setAccountURLSQL, url, formatTime(s.now()), ca)
		return rowsOrNotFound("set account url", res, err, "ACME account of CA "+ca)
	})
}

func scanAccount(row rowScanner) (*Account, error) {
	var (
		a                Account
		serial, url      sql.NullString
		keyID            sql.NullString
		created, updated string
	)
	if err := row.Scan(&a.CA, &a.TokenLabel, &serial, &a.KeyLabel, &keyID, &url, &created, &updated); err != nil {
		return nil, err
	}
	var err error
	if a.KeyID, err = decodeHex(keyID); err != nil {
		return nil, err
	}
	a.TokenSerial, a.URL = serial.String, url.String
	if a.Created, err = parseTime(created); err != nil {
		return nil, err
	}
	a.Updated, err = parseTime(updated)
	return &a, err
}

// rowsOrNotFound turns an UPDATE by key that matched no row into ErrNotFound.
func rowsOrNotFound(op string, res sql.Result, err error, what string) error {
	if err != nil {
		return dbErr(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return dbErr(op, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, what)
	}
	return nil
}
