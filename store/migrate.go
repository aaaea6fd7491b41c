package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// migrationFS holds the schema history. Files are named NNNN_name.sql with
// unique versions from 1 up. Applied files are never edited: a change is a
// new file.
//
// Versions may have gaps: numbers are handed out to parallel lines of work
// before they merge, so 0003 can land before 0002. Every migration must
// therefore stand on 0001 and its own number's predecessors in *its* line
// only (add columns, tables, indexes; never rewrite another's), and migrate
// applies each version not yet recorded, in ascending order.
//
//go:embed migrations/*.sql migrations/postgres/*.sql
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

const (
	createMigrationsTableSQL = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL
)`
	appliedVersionsSQL  = `SELECT version FROM schema_migrations ORDER BY version`
	migrationAppliedSQL = `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?)`
	insertMigrationSQL  = `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`
)

// loadMigrations reads and orders the migrations in fsys (under
// "migrations/"), rejecting bad names and duplicate versions so a mistake in
// the tree fails every test rather than a production start. 0001 (the keys
// table) must be present; later gaps are allowed (see migrationFS).
func loadMigrations(fsys fs.FS) ([]migration, error) {
	return loadMigrationsFrom(fsys, "migrations")
}

// loadMigrationsFrom is loadMigrations for the files in dir: SQLite's in
// migrations/, PostgreSQL's in migrations/postgres/ (the same versions;
// TestMigrationParity holds the two lines together).
func loadMigrationsFrom(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || path.Ext(name) != ".sql" {
			continue
		}
		num, _, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("store: migration %q: name must be NNNN_name.sql", name)
		}
		body, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("store: migration %q: %w", name, err)
		}
		ms = append(ms, migration{version: v, name: name, sql: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	if len(ms) == 0 {
		return nil, errors.New("store: no migrations")
	}
	if ms[0].version != 1 {
		return nil, fmt.Errorf("store: migration %q: the first migration must be version 1", ms[0].name)
	}
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("store: migrations %q and %q have the same version", ms[i-1].name, ms[i].name)
		}
	}
	return ms, nil
}

// migrate applies every migration not yet recorded, in version order. Each
// runs in its own IMMEDIATE transaction (the write pool's _txlock) that first
// re-checks whether the version is recorded, so two processes opening the
// same file at once apply each migration exactly once. A recorded version
// this binary does not embed means a newer (or other) csrd wrote the file.
func migrate(ctx context.Context, db *sql.DB, ms []migration, now func() time.Time, d *dialect) error {
	if err := createMigrationsTable(ctx, db, d); err != nil {
		return err
	}
	applied, err := appliedVersions(ctx, db)
	if err != nil {
		return err
	}
	known := make(map[int]bool, len(ms))
	for _, m := range ms {
		known[m.version] = true
	}
	for v := range applied {
		if !known[v] {
			return &SchemaVersionError{Have: v, Known: ms[len(ms)-1].version}
		}
	}
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		if err := applyMigration(ctx, db, m, now, d); err != nil {
			return err
		}
	}
	return nil
}

func appliedVersions(ctx context.Context, db *sql.DB) (map[int]bool, error) {
	rows, err := db.QueryContext(ctx, appliedVersionsSQL)
	if err != nil {
		return nil, dbErr("read schema versions", err)
	}
	defer rows.Close()
	applied := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, dbErr("read schema versions", err)
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr("read schema versions", err)
	}
	return applied, nil
}

// createMigrationsTable creates schema_migrations if missing, under the
// migration lock (two PostgreSQL sessions creating a table at once may
// both pass IF NOT EXISTS and one then fails).
func createMigrationsTable(ctx context.Context, db *sql.DB, d *dialect) (err error) {
	const op = "create schema_migrations"
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return dbErr(op, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if d.migrationLockSQL != "" {
		if _, err := tx.ExecContext(ctx, d.migrationLockSQL); err != nil {
			return dbErr(op, err)
		}
	}
	if _, err := tx.ExecContext(ctx, createMigrationsTableSQL); err != nil {
		return dbErr(op, err)
	}
	return dbErr(op, tx.Commit())
}

func applyMigration(ctx context.Context, db *sql.DB, m migration, now func() time.Time, d *dialect) (err error) {
	op := "migration " + m.name
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return dbErr(op, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if d.migrationLockSQL != "" {
		if _, err := tx.ExecContext(ctx, d.migrationLockSQL); err != nil {
			return dbErr(op, err)
		}
	}
	var applied bool
	if err := tx.QueryRowContext(ctx, migrationAppliedSQL, m.version).Scan(&applied); err != nil {
		return dbErr(op, err)
	}
	if applied {
		return tx.Rollback()
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return dbErr(op, err)
	}
	if step := d.schemaSteps[m.version]; step != nil {
		if err := step(ctx, tx); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, insertMigrationSQL, m.version, formatTime(now())); err != nil {
		return dbErr(op, err)
	}
	if err := tx.Commit(); err != nil {
		return dbErr(op, err)
	}
	return nil
}
