package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Account is a CA's ACME account on one token: where its key pair lives
// and, once registered, its URL (the JWS "kid"). Each token a node signs
// ACME requests with has its own account with the CA (migration 0070).
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

// AccountOf names an account: its CA and the token its key lives on.
type AccountOf struct {
	CA, TokenLabel, TokenSerial string
}

func (o AccountOf) String() string {
	return fmt.Sprintf("ACME account of CA %q on token %q (serial %q)", o.CA, o.TokenLabel, o.TokenSerial)
}

const (
	accountColumns   = `ca, token_label, token_serial, key_label, key_id, account_url, created_time, updated_time`
	accountWhere     = ` WHERE ca = ? AND token_label = ? AND token_serial = ?`
	getAccountSQL    = `SELECT ` + accountColumns + ` FROM acme_accounts` + accountWhere
	insertAccountSQL = `INSERT INTO acme_accounts (` + accountColumns + `) VALUES (?, ?, ?, ?, ?, NULL, ?, ?)
ON CONFLICT (ca, token_label, token_serial) DO NOTHING`
	setAccountURLSQL = `UPDATE acme_accounts SET account_url = ?, updated_time = ?` + accountWhere
)

// GetAccount returns the account of, or an error matching ErrNotFound.
func (s *Store) GetAccount(ctx context.Context, of AccountOf) (*Account, error) {
	a, err := scanAccount(s.queryRow(ctx, getAccountSQL, of.CA, of.TokenLabel, of.TokenSerial))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, of)
	}
	if err != nil {
		return nil, dbErr("get account", err)
	}
	return a, nil
}

// BeginAccount records where the account key of a.CA on a's token will be
// generated, before it is: no account key exists in the token without a
// row naming it. If that account already has a row, that row wins and is
// returned (two callers racing to create it agree on one key).
func (s *Store) BeginAccount(ctx context.Context, a *Account) (*Account, error) {
	if a.CA == "" || a.KeyLabel == "" || len(a.KeyID) == 0 || a.TokenLabel == "" {
		return nil, errors.New("store: begin account: CA, token label, key label and key id are required")
	}
	of := AccountOf{CA: a.CA, TokenLabel: a.TokenLabel, TokenSerial: a.TokenSerial}
	var out *Account
	err := s.withTx(ctx, "begin account", func(ctx context.Context, tx *sql.Tx) error {
		now := formatTime(s.now())
		if _, err := tx.ExecContext(ctx, insertAccountSQL, a.CA, a.TokenLabel, a.TokenSerial, a.KeyLabel,
			nullHex(a.KeyID), now, now); err != nil {
			return dbErr("begin account", err)
		}
		var err error
		out, err = scanAccount(tx.QueryRowContext(ctx, getAccountSQL, of.CA, of.TokenLabel, of.TokenSerial))
		return dbErr("begin account", err)
	})
	return out, err
}

// SetAccountURL records the account's URL once the CA registered it.
func (s *Store) SetAccountURL(ctx context.Context, of AccountOf, url string) error {
	return s.withTx(ctx, "set account url", func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, setAccountURLSQL, url, formatTime(s.now()), of.CA, of.TokenLabel, of.TokenSerial)
		return rowsOrNotFound("set account url", res, err, of.String())
	})
}

func scanAccount(row rowScanner) (*Account, error) {
	var (
		a                Account
		url, keyID       sql.NullString
		created, updated string
	)
	if err := row.Scan(&a.CA, &a.TokenLabel, &a.TokenSerial, &a.KeyLabel, &keyID, &url, &created, &updated); err != nil {
		return nil, err
	}
	var err error
	if a.KeyID, err = decodeHex(keyID); err != nil {
		return nil, err
	}
	a.URL = url.String
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
