package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// CopyReport says what CopySQLite copied.
type CopyReport struct {
	Tables map[string]int64 // rows copied per table
	Audit  AuditReport      // the chain as verified in the target
}

// ErrNotEmpty: the target of a copy already holds records.
var ErrNotEmpty = errors.New("store: target database is not empty")

// notCopied are tables that describe one running deployment, not its
// records: the schema's own bookkeeping (each database has its own), and
// the node registry (a node registers itself when it starts).
var notCopied = map[string]bool{"schema_migrations": true, "nodes": true, "node_tokens": true}

// CopySQLite copies every record, fact and audit row of the SQLite
// database at src into dst, a PostgreSQL Store with nothing in it, keeping
// every id: Keyfactor request ids, token labels (derived from ids) and the
// audit chain (whose hashes cover the ids) stay as they are, and the
// chain verifies in the target. The ids' sequences continue after the
// source's (a deleted record's id is not handed out again).
//
// src must not be in use (csrd stopped: the copy is the cutover) and must
// carry exactly the migrations this csrd has, so that both schemas match
// column for column. The copy is one transaction: on any error the target
// is left as it was.
func CopySQLite(ctx context.Context, src string, dst *Store) (CopyReport, error) {
	rep := CopyReport{Tables: map[string]int64{}}
	if dst.d != postgresDialect {
		return rep, errors.New("store: copy: the target must be a PostgreSQL database")
	}
	abs, err := existingPath(src)
	if err != nil {
		return rep, err
	}
	lock, err := lockFile(abs, true)
	if err != nil {
		return rep, err
	}
	defer lock.Close()
	sdb, err := sql.Open("sqlite3", abs+"?"+backupParams)
	if err != nil {
		return rep, fmt.Errorf("store: copy: %w", err)
	}
	defer sdb.Close()
	if err := sameSchema(ctx, sdb); err != nil {
		return rep, err
	}
	tables, err := copiedTables(ctx, sdb)
	if err != nil {
		return rep, err
	}
	tx, err := dst.w.BeginTx(ctx, nil)
	if err != nil {
		return rep, dbErr("copy", err)
	}
	defer func() { _ = tx.Rollback() }() // after Commit: a no-op
	for _, t := range tables {
		var n int64
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+t).Scan(&n); err != nil {
			return rep, dbErr("copy", err)
		}
		if n > 0 {
			return rep, fmt.Errorf("%w: table %s has %d rows; copy into a new, empty database", ErrNotEmpty, t, n)
		}
	}
	for _, t := range tables {
		n, err := copyTable(ctx, sdb, tx, t)
		if err != nil {
			return rep, err
		}
		rep.Tables[t] = n
	}
	if err := continueSequences(ctx, sdb, tx, tables); err != nil {
		return rep, err
	}
	if err := tx.Commit(); err != nil {
		return rep, dbErr("copy", err)
	}
	rep.Audit, err = dst.VerifyAudit(ctx)
	return rep, err
}

// sameSchema refuses a source whose migrations are not exactly this
// binary's.
func sameSchema(ctx context.Context, db *sql.DB) error {
	ms, err := loadMigrations(migrationFS)
	if err != nil {
		return err
	}
	applied, err := appliedVersions(ctx, db)
	if err != nil {
		return fmt.Errorf("store: copy: not a csrd database: %w", err)
	}
	for _, m := range ms {
		if !applied[m.version] {
			return fmt.Errorf("store: copy: the SQLite database lacks migration %s: start this csrd on it once (it migrates at start), stop it, then copy", m.name)
		}
		delete(applied, m.version)
	}
	for v := range applied {
		return &SchemaVersionError{Have: v, Known: ms[len(ms)-1].version}
	}
	return nil
}

// copiedTables lists the source's tables in creation order (a table a
// later one refers to is copied first).
func copiedTables(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid`)
	if err != nil {
		return nil, dbErr("copy", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, dbErr("copy", err)
		}
		if !notCopied[name] {
			out = append(out, name)
		}
	}
	return out, dbErr("copy", rows.Err())
}

// copyTable copies every row of table, column by column by name.
func copyTable(ctx context.Context, src *sql.DB, tx *sql.Tx, table string) (int64, error) {
	rows, err := src.QueryContext(ctx, `SELECT * FROM `+table+` ORDER BY rowid`)
	if err != nil {
		return 0, dbErr("copy "+table, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, dbErr("copy "+table, err)
	}
	insert := `INSERT INTO ` + table + ` (` + strings.Join(cols, ", ") + `) VALUES (` +
		strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + `)`
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var n int64
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, dbErr("copy "+table, err)
		}
		if _, err := tx.ExecContext(ctx, insert, vals...); err != nil {
			return n, dbErr(fmt.Sprintf("copy %s row %d", table, n+1), err)
		}
		n++
	}
	return n, dbErr("copy "+table, rows.Err())
}

// continueSequences moves every identity sequence of the copied tables
// past the source's AUTOINCREMENT value for the table (which may be ahead
// of the last row: deleted ids are never handed out again), and the audit
// chain's sequence to the source's, which verification compares with the
// last row.
func continueSequences(ctx context.Context, src *sql.DB, tx *sql.Tx, tables []string) error {
	seq := func(table string) (int64, error) {
		var n int64
		err := src.QueryRowContext(ctx, `SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = ?), 0)`, table).Scan(&n)
		return n, dbErr("copy", err)
	}
	for _, t := range tables {
		rows, err := tx.QueryContext(ctx, `SELECT column_name FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = ? AND is_identity = 'YES'`, t)
		if err != nil {
			return dbErr("copy", err)
		}
		var idCols []string
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				rows.Close()
				return dbErr("copy", err)
			}
			idCols = append(idCols, c)
		}
		rows.Close()
		for _, c := range idCols {
			n, err := seq(t)
			if err != nil {
				return err
			}
			// setval(…, 0) is out of range: an empty table keeps its start.
			if _, err := tx.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence(?, ?), GREATEST(?, (SELECT COALESCE(MAX(`+c+`), 0) FROM `+t+`), 1), ? > 0 OR EXISTS (SELECT 1 FROM `+t+`))`,
				t, c, n, n); err != nil {
				return dbErr("copy", err)
			}
		}
	}
	n, err := seq("audit")
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE audit_seq SET seq = ?`, n)
	return dbErr("copy", err)
}
