package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// The "sqlite3" driver is registered by the go-sqlite3 import in errors.go.

// Connection settings. Pragmas go in the DSN so go-sqlite3 applies them to
// every connection the pools open, not just the first.
const (
	// writeParams: WAL lets readers proceed during a write; busy_timeout
	// absorbs lock waits from other processes (csrctl); synchronous=NORMAL
	// is durable across application crashes in WAL mode and loses at most
	// the last transactions on power loss — acceptable because reconcile
	// repairs records against the token; _txlock=immediate takes the write
	// lock at BEGIN, so a transaction never fails with SQLITE_BUSY halfway
	// through when it upgrades from read to write.
	writeParams = "_journal_mode=WAL&_busy_timeout=5000&_foreign_keys=on&_synchronous=NORMAL&_txlock=immediate"
	// readParams: journal_mode is persistent in the file (set by the writer),
	// so readers do not touch it; query_only makes a write through the read
	// pool an error instead of a second writer.
	readParams = "_busy_timeout=5000&_foreign_keys=on&_query_only=on"

	busyTimeoutMillis = 5000

	pingReadSQL = `SELECT COUNT(*) FROM schema_migrations`
)

// Store is csrd's record database.
//
// It holds two pools over the same file. SQLite admits one writer at a
// time; with several write connections, concurrent writers would queue in
// SQLite's busy handler (polling, unfair, and SQLITE_BUSY after the
// timeout). A write pool of exactly one connection queues them in
// database/sql instead — FIFO, cancellable by ctx, and never BUSY within
// this process. Reads go through a separate pool so a slow listing never
// waits behind a write, which WAL makes safe.
type Store struct {
	d  *dialect
	w  *sql.DB // exactly one connection; every write goes here
	r  *sql.DB // query-only pool for reads
	ws *stmtCache
	rs *stmtCache

	writer *writer // group commit of every write (writer.go)
	now    func() time.Time
	lock   *fileLock // SQLite: shared while open; Restore takes it exclusively (lock.go)
	node   string    // WithNode
	stats  stats     // Stats

	// afterAuditRows, when set (tests only), runs in VerifyAudit between
	// reading the rows and reading the sequence.
	afterAuditRows func()
}

// Option configures Open.
type Option func(*options)

type options struct {
	password string
	node     string
	existing bool // OpenExisting: refuse a database without csrd's schema
	readOnly bool // OpenReadOnly
}

// WithNode names the csrd node this Store works for: records it begins,
// and intents it commits, are leased to it (KeyRecord.Node). Without it
// (csrctl) they are leased to nobody.
func WithNode(name string) Option { return func(o *options) { o.node = name } }

// WithPassword gives the PostgreSQL password (read from csrd's
// database_password_file); without it pgx looks in PGPASSFILE or
// ~/.pgpass. SQLite ignores it.
func WithPassword(pw string) Option { return func(o *options) { o.password = pw } }

func collect(opts []Option) options {
	var o options
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Open opens the database and applies pending migrations. database is a
// postgres:// or postgresql:// URL (see openPostgres) or a SQLite file
// path.
//
// A SQLite database is created if needed, its pragmas checked. path must
// name a file: an in-memory database would lose every record on restart. A
// missing parent directory is created with mode 0700 and a new database
// file with 0600; the WAL and shared-memory files inherit the database
// file's mode.
func Open(ctx context.Context, database string, opts ...Option) (*Store, error) {
	o := collect(opts)
	if IsPostgres(database) {
		return openPostgres(ctx, database, o)
	}
	ms, err := loadMigrations(migrationFS)
	if err != nil {
		return nil, err
	}
	s, err := open(ctx, database, ms)
	if err != nil {
		return nil, err
	}
	s.node = o.node
	return s, nil
}

// OpenExisting is Open for tools that act on csrd's database (csrctl): it
// never creates the database or its directory, so a mistyped or deleted
// path fails (an error matching fs.ErrNotExist that names the path)
// instead of yielding an empty database. SQLite opens it with mode=rw, so
// a file removed after the check is not re-created either.
//
// A PostgreSQL database (a URL) must hold csrd's schema_migrations table:
// an empty database is refused rather than given csrd's schema.
func OpenExisting(ctx context.Context, path string, opts ...Option) (*Store, error) {
	if IsPostgres(path) {
		o := collect(opts)
		o.existing = true
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
	s, err := openPools(ctx, abs, fileURI(abs, "rw")+"&"+writeParams, ms, fileURI(abs, "rw")+"&"+readParams)
	if err != nil {
		return nil, err
	}
	s.node = collect(opts).node
	return s, nil
}

func open(ctx context.Context, path string, ms []migration) (_ *Store, err error) {
	abs, err := checkPath(path)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("store: create database directory: %w", err)
	}
	// SQLite would create the file with 0644 &^ umask; create it first so
	// key records are never readable by other users, not even briefly.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("store: create database file: %w", err)
		}
	case !errors.Is(err, fs.ErrExist):
		return nil, fmt.Errorf("store: create database file: %w", err)
	}
	return openPools(ctx, abs, abs+"?"+writeParams, ms, abs+"?"+readParams)
}

// openPools takes the shared file lock on abs, opens the write pool on
// writeDSN, migrates, then opens the read pool on readDSN and starts the
// writer.
func openPools(ctx context.Context, abs, writeDSN string, ms []migration, readDSN string) (_ *Store, err error) {
	s := &Store{d: sqliteDialect, now: func() time.Time { return time.Now().UTC() }}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	if s.lock, err = lockFile(abs, false); err != nil {
		return nil, err
	}

	if s.w, err = sql.Open("sqlite3", writeDSN); err != nil {
		return nil, fmt.Errorf("store: open: %w", err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)
	if err := verifyPragmas(ctx, s.w, false); err != nil {
		return nil, err
	}
	if err := migrate(ctx, s.w, ms, s.now, s.d); err != nil {
		return nil, err
	}
	if err := s.openReadPool(ctx, readDSN); err != nil {
		return nil, err
	}
	s.ws = newStmtCache(s.w)
	if err := s.ws.prepareAll(ctx, writeStatements); err != nil {
		return nil, dbErr("prepare", err)
	}
	if err := s.startWriter(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) openReadPool(ctx context.Context, dsn string) (err error) {
	if s.r, err = sql.Open("sqlite3", dsn); err != nil {
		return fmt.Errorf("store: open: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	s.r.SetMaxOpenConns(n)
	s.r.SetMaxIdleConns(n)
	if err := verifyPragmas(ctx, s.r, true); err != nil {
		return err
	}
	s.rs = newStmtCache(s.r)
	return nil
}

// checkPath refuses DSNs that are not plain file paths. go-sqlite3 would
// read anything after '?' as options and a "file:" prefix as a URI, either
// of which could silently select an in-memory or differently configured
// database.
func checkPath(path string) (string, error) {
	switch {
	case path == "", path == ":memory:":
		return "", fmt.Errorf("store: database path %q: a file path is required (in-memory databases lose records)", path)
	case strings.HasPrefix(path, "file:"), strings.ContainsAny(path, "?#"), strings.ContainsRune(path, 0):
		return "", fmt.Errorf("store: database path %q: must be a plain file path, not a URI or DSN", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("store: database path %q: %w", path, err)
	}
	return abs, nil
}

// verifyPragmas checks that the DSN options took effect: go-sqlite3 ignores
// unknown keys, and journal_mode=WAL silently stays "delete" on file systems
// without shared memory support.
func verifyPragmas(ctx context.Context, db *sql.DB, readOnly bool) error {
	// One connection, so every pragma below reads the same one.
	conn, err := db.Conn(ctx)
	if err != nil {
		return dbErr("open", err)
	}
	defer conn.Close()
	var (
		journal           string
		foreignKeys, busy int
		queryOnly         int
	)
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&journal); err != nil {
		return dbErr("read journal_mode", err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&foreignKeys); err != nil {
		return dbErr("read foreign_keys", err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil {
		return dbErr("read busy_timeout", err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA query_only").Scan(&queryOnly); err != nil {
		return dbErr("read query_only", err)
	}
	switch {
	case !strings.EqualFold(journal, "wal"):
		return fmt.Errorf("store: journal_mode is %q, want wal (does the file system support shared memory?)", journal)
	case foreignKeys != 1:
		return errors.New("store: foreign_keys is off")
	case busy != busyTimeoutMillis:
		return fmt.Errorf("store: busy_timeout is %d, want %d", busy, busyTimeoutMillis)
	case readOnly && queryOnly != 1:
		return errors.New("store: query_only is off on the read pool")
	case !readOnly && queryOnly != 0:
		return errors.New("store: query_only is on on the write pool")
	}
	return nil
}

// Close closes both pools. Outstanding transactions are rolled back by
// SQLite; WAL content is checkpointed by the last connection to close.
func (s *Store) Close() error {
	s.writer.close() // writes in flight finish first
	errs := []error{s.rs.close(), s.ws.close()}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	errs = append(errs, s.lock.Close()) // last: see fileLock
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Ping is the readiness check. database/sql's PingContext only proves a
// connection handle exists, so Ping instead takes and releases the write lock
// (BEGIN IMMEDIATE; ROLLBACK) — proving the file is writable and not locked
// past the busy timeout — and reads schema_migrations through the read pool.
// It writes nothing. It waits for an in-flight write, so give ctx a deadline.
//
// On PostgreSQL it proves a connection on each pool and that the server
// is a primary (see pingPostgres).
func (s *Store) Ping(ctx context.Context) error {
	if s.w == nil {
		return fmt.Errorf("%w: ping", ErrReadOnly)
	}
	if s.d == postgresDialect {
		return s.pingPostgres(ctx)
	}
	tx, err := s.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE via _txlock
	if err != nil {
		return dbErr("ping", err)
	}
	if err := tx.Rollback(); err != nil {
		return dbErr("ping", err)
	}
	var n int
	if err := s.r.QueryRowContext(ctx, pingReadSQL).Scan(&n); err != nil {
		return dbErr("ping", err)
	}
	return nil
}
