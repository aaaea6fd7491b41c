package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// schemaStep is a part of a migration its SQL file cannot express; it runs
// after that version's file, in the same transaction. Steps are per
// backend (dialect.schemaSteps): what SQLite needs Go for, PostgreSQL's
// twin file may say in SQL.
type schemaStep func(context.Context, *sql.Tx) error

// sqliteSteps are SQLite's schema steps. 0041 widens two CHECK lists,
// which SQLite cannot ALTER; PostgreSQL's 0041 does it with ALTER TABLE …
// DROP/ADD CONSTRAINT and has no step.
var sqliteSteps = map[int]schemaStep{
	41: widenKeyChecks,
}

// keyCheckEdits widen the keys table's CHECK value lists for 0041: the
// state 'retired' (0001's list) and the intent 'retire' (0003's).
var keyCheckEdits = []struct{ old, new string }{
	{"'failed', 'deleted', 'lost')", "'failed', 'deleted', 'lost', 'retired')"},
	{"intent IN ('delete', 'marry')", "intent IN ('delete', 'marry', 'retire')"},
}

// widenKeyChecks (SQLite only) rewrites the keys table's definition in sqlite_master with
// the widened value lists, following SQLite's documented procedure for
// constraint changes every row already satisfies (writable_schema, then a
// new schema_version so every connection reparses the schema). Each list
// must occur exactly once, or nothing is changed.
func widenKeyChecks(ctx context.Context, tx *sql.Tx) error {
	const op = "widen keys checks"
	var ddl string
	if err := tx.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'keys'`).Scan(&ddl); err != nil {
		return dbErr(op, err)
	}
	for _, e := range keyCheckEdits {
		if n := strings.Count(ddl, e.old); n != 1 {
			return fmt.Errorf("store: %s: %q occurs %d times in the keys table's definition, want 1", op, e.old, n)
		}
		ddl = strings.Replace(ddl, e.old, e.new, 1)
	}
	var version int
	if err := tx.QueryRowContext(ctx, `PRAGMA schema_version`).Scan(&version); err != nil {
		return dbErr(op, err)
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`PRAGMA writable_schema = ON`, nil},
		{`UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'keys'`, []any{ddl}},
		{fmt.Sprintf(`PRAGMA schema_version = %d`, version+1), nil},
		{`PRAGMA writable_schema = OFF`, nil},
	} {
		if _, err := tx.ExecContext(ctx, q.sql, q.args...); err != nil {
			return dbErr(op, err)
		}
	}
	var check string
	if err := tx.QueryRowContext(ctx, `PRAGMA quick_check`).Scan(&check); err != nil || check != "ok" {
		return fmt.Errorf("store: %s: quick_check after the change: %q %v", op, check, err)
	}
	return nil
}
