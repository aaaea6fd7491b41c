package store

import (
	"context"
	"database/sql"
	"strings"
	"sync"
)

// Statements are prepared once per pool and reused: SQLite compiles SQL
// (with the schema's CHECK constraints) on every prepare, which costs more
// than executing an INSERT of one row. database/sql re-prepares a
// statement transparently on a connection that has not seen it, so the
// read pool's statements work on any of its connections.
//
// The write pool has one connection, held by a transaction for its whole
// life, so its statements cannot be prepared lazily from inside one: they
// are prepared at Open (writeStatements); any other write SQL is executed
// unprepared.
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

func newStmtCache(db *sql.DB) *stmtCache { return &stmtCache{db: db, m: map[string]*sql.Stmt{}} }

// writeStatements are the write-path statements prepared at Open: those
// every Generate runs, and the transitions' with their audit rows.
var writeStatements = []string{insertKeySQL, setKeyLabelSQL, completeKeySQL, transitionSQL, keyStateSQL,
	keyLabelSQL, auditSeqHeadSQL, auditHeadSQL, insertAuditSQL}

// prepareAll prepares queries up front (the write pool, before any
// transaction can hold its one connection). Preparing is only a speed-up:
// a statement on a table or column this database's schema lacks (a test's
// reduced migration set) is left unprepared and fails, if it is ever run, with the
// same error then; any other prepare error fails Open.
func (c *stmtCache) prepareAll(ctx context.Context, queries []string) error {
	for _, q := range queries {
		if _, err := c.get(ctx, q, true); err != nil && !missingSchema(err) {
			return err
		}
	}
	return nil
}

// missingSchema reports SQLite's refusal to prepare a statement on a table
// or column the database's migrations have not created.
func missingSchema(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "no such table") || strings.Contains(msg, "no such column") ||
		strings.Contains(msg, "has no column named")
}

// get returns the prepared statement for query, preparing it on first use
// when lazy (read pool) and returning nil when it was not prepared up front.
func (c *stmtCache) get(ctx context.Context, query string, lazy bool) (*sql.Stmt, error) {
	if c == nil { // a dialect without prepared statements (dialect.prepare)
		return nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[query]; ok {
		return st, nil
	}
	if !lazy {
		return nil, nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.m[query] = st
	return st, nil
}

func (c *stmtCache) close() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var first error
	for q, st := range c.m {
		if err := st.Close(); err != nil && first == nil {
			first = err
		}
		delete(c.m, q)
	}
	return first
}

// txExec runs a write statement inside tx with its prepared form.
func (s *Store) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	st, _ := s.ws.get(ctx, query, false)
	if st == nil {
		return tx.ExecContext(ctx, query, args...)
	}
	return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
}

// txQueryRow runs a one-row query inside tx with its prepared form.
func (s *Store) txQueryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) rowScanner {
	st, _ := s.ws.get(ctx, query, false)
	if st == nil {
		return tx.QueryRowContext(ctx, query, args...)
	}
	return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
}

// queryRow and query read through the read pool with prepared statements.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) rowScanner {
	st, err := s.rs.get(ctx, query, true)
	switch {
	case err != nil:
		return errRow{err}
	case st == nil:
		return s.r.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.rs.get(ctx, query, true)
	switch {
	case err != nil:
		return nil, err
	case st == nil:
		return s.r.QueryContext(ctx, query, args...)
	}
	return st.QueryContext(ctx, args...)
}

type rowScanner interface{ Scan(...any) error }

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
