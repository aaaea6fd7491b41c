package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// ErrReadOnly: a write on a Store opened with OpenReadOnly.
var ErrReadOnly = errors.New("store: database opened read-only")

// OpenReadOnly opens the existing database at path for reading only: SQLite
// opens the file with mode=ro and every connection is query_only, so
// nothing — not a migration, not a stray write — can change it, and a path
// with no database is an error matching fs.ErrNotExist instead of a new,
// empty database. It applies no migrations: the schema must be exactly the
// one this binary knows (a *SchemaVersionError when it is newer, an error
// naming the missing versions when csrd has not migrated it yet). Writes
// return ErrReadOnly.
//
// A PostgreSQL database (a URL) is read through read-only transactions
// (default_transaction_read_only), with the same schema check.
func OpenReadOnly(ctx context.Context, path string, opts ...Option) (_ *Store, err error) {
	if IsPostgres(path) {
		o := collect(opts)
		o.readOnly = true
		return openPostgres(ctx, path, o)
	}
	ms, err := loadMigrations(migrationFS)
	if err != nil {
		return nil, err
	}
	abs, err := existingDatabase(ctx, path)
	if err != nil {
		return nil, err
	}
	s := &Store{d: sqliteDialect, now: func() time.Time { return time.Now().UTC() }}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	// Shared, as every Store's: a restore does not replace the file under
	// a reader.
	if s.lock, err = lockFile(abs, false); err != nil {
		return nil, err
	}
	if err := s.openReadPool(ctx, fileURI(abs, "ro")+"&"+readParams); err != nil {
		return nil, err
	}
	if err := checkSchema(ctx, s.r, ms); err != nil {
		return nil, err
	}
	return s, nil
}

// existingDatabase checks that path names an existing csrd database and
// returns its absolute path. It looks through a read-only connection of
// its own, before any pool's pragmas (journal_mode=WAL) could change a
// foreign SQLite file it was pointed at by mistake.
func existingDatabase(ctx context.Context, path string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", dbErr("open", err)
	}
	abs, err := checkPath(path)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("store: database %s: %w (csrd creates it at its first start; is the path right?)", abs, fs.ErrNotExist)
	case err != nil:
		return "", fmt.Errorf("store: database %s: %w", abs, err)
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("store: database %s: not a regular file", abs)
	}
	db, err := sql.Open("sqlite3", fileURI(abs, "ro")+"&"+readParams)
	if err != nil {
		return "", fmt.Errorf("store: open: %w", err)
	}
	defer db.Close()
	if err := isCsrdDatabase(ctx, db, hasMigrationsTableSQL); err != nil {
		return "", fmt.Errorf("store: database %s: %w", abs, err)
	}
	return abs, nil
}

// fileURI is the SQLite URI of the file abs opened with mode (ro, rw):
// unlike a plain path, it makes SQLite fail rather than create a missing
// file. checkPath has refused '?' and '#'; '%' is the URI's escape.
func fileURI(abs, mode string) string {
	return "file:" + strings.ReplaceAll(abs, "%", "%25") + "?mode=" + mode
}

const hasMigrationsTableSQL = `SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')`

// isCsrdDatabase refuses a database without csrd's schema_migrations
// table; query says whether the table exists.
func isCsrdDatabase(ctx context.Context, db *sql.DB, query string) error {
	var ok bool
	if err := db.QueryRowContext(ctx, query).Scan(&ok); err != nil {
		return dbErr("read schema", err)
	}
	if !ok {
		return errors.New("not a csrd database (it has no schema_migrations table)")
	}
	return nil
}

// checkSchema requires the database to record exactly the migrations ms.
func checkSchema(ctx context.Context, db *sql.DB, ms []migration) error {
	applied, err := appliedVersions(ctx, db)
	if err != nil {
		return err
	}
	var missing []int
	for _, m := range ms {
		if !applied[m.version] {
			missing = append(missing, m.version)
		}
		delete(applied, m.version)
	}
	if len(applied) > 0 {
		return &SchemaVersionError{Have: slices.Max(slices.Collect(maps.Keys(applied))), Known: ms[len(ms)-1].version}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("store: the database lacks schema versions %v that this binary knows: start the csrd of this release once (it migrates the database), then retry", missing)
	}
	return nil
}
