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

// migrationFS holds the schema history. Files are named NNNN_name.sql;
// versions start at 1 and have no gaps. Applied files are never edited: a
// change is a new file.
//
//go:embed migrations/*.sql
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
	maxMigrationVersionSQL = `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`
	migrationAppliedSQL    = `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?)`
	insertMigrationSQL     = `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`
)

// loadMigrations reads and orders the migrations in fsys (under
// "migrations/"), rejecting bad names, duplicates and gaps so a mistake in
// the tree fails every test rather than a production start.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, "migrations")
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
		body, err := fs.ReadFile(fsys, path.Join("migrations", name))
		if err != nil {
			return nil, fmt.Errorf("store: migration %q: %w", name, err)
		}
		ms = append(ms, migration{version: v, name: name, sql: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("store: migration %q: expected version %d (versions must be 1..n without gaps or duplicates)", m.name, i+1)
		}
	}
	if len(ms) == 0 {
		return nil, errors.New("store: no migrations")
	}
	return ms, nil
}

// migrate brings db up to the newest migration. Each migration runs in its
// own IMMEDIATE transaction (the write pool's _txlock) that first re-checks
// whether the version is recorded, so two processes opening the same file at
// once apply each migration exactly once.
func migrate(ctx context.Context, db *sql.DB, ms []migration, now func() time.Time) error {
	if _, err := db.ExecContext(ctx, createMigrationsTableSQL); err != nil {
		return dbErr("create schema_migrations", err)
	}
	known := ms[len(ms)-1].version
	var have int
	if err := db.QueryRowContext(ctx, maxMigrationVersionSQL).Scan(&have); err != nil {
		return dbErr("read schema version", err)
	}
	if have > known {
		return &SchemaVersionError{Have: have, Known: known}
	}
	for _, m := range ms {
		if m.version <= have {
			continue
		}
		if err := applyMigration(ctx, db, m, now); err != nil {
			return err
		}
	}
	return nil
}

func applyMigration(ctx context.Context, db *sql.DB, m migration, now func() time.Time) (err error) {
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
	if _, err := tx.ExecContext(ctx, insertMigrationSQL, m.version, formatTime(now())); err != nil {
		return dbErr(op, err)
	}
	if err := tx.Commit(); err != nil {
		return dbErr(op, err)
	}
	return nil
}
