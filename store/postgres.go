package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// IsPostgres reports whether database names a PostgreSQL database (a
// postgres:// or postgresql:// URL) rather than a SQLite file.
func IsPostgres(database string) bool {
	return strings.HasPrefix(database, "postgres://") || strings.HasPrefix(database, "postgresql://")
}

// Describe names database for logs and messages: a SQLite path as is, a
// PostgreSQL URL without password or parameters.
func Describe(database string) string {
	if !IsPostgres(database) {
		return database
	}
	u, err := url.Parse(database)
	if err != nil {
		return "postgres (unparsable URL)"
	}
	user := ""
	if u.User != nil {
		user = u.User.Username() + "@"
	}
	return u.Scheme + "://" + user + u.Host + u.Path
}

// Connection settings for PostgreSQL.
const (
	pgConnectTimeout = 5 * time.Second
	// A node killed or cut off mid-transaction holds its row locks — the
	// audit sequence's among them, which every node's appends wait for —
	// until the server notices. The server ends an idle transaction after
	// this long, and TCP keepalives notice a silent peer on either side.
	pgIdleInTxTimeout = "30s"
	pgKeepAliveIdle   = 10 * time.Second
	pgConnMaxLifetime = 30 * time.Minute
)

// postgresConfig parses dsn and applies csrd's rules and settings: no
// password in the URL (it goes in database_password_file, passed here as
// password, or in PGPASSFILE), and no plaintext connection to a host that
// is not this machine.
func postgresConfig(dsn, password string) (*pgx.ConnConfig, error) {
	where := Describe(dsn)
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: database %s: not a valid URL", where)
	}
	if _, ok := u.User.Password(); ok || u.Query().Has("password") {
		return nil, fmt.Errorf("store: database %s: the URL holds a password; put it in database_password_file (or PGPASSFILE) instead", where)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// The URL holds no password (checked above), so pgx's message,
		// which quotes it, leaks none.
		return nil, fmt.Errorf("store: database %s: %w", where, err)
	}
	if err := checkTransport(cfg, u); err != nil {
		return nil, fmt.Errorf("store: database %s: %w", where, err)
	}
	if password != "" {
		cfg.Password = password
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = pgConnectTimeout
	}
	dialer := &net.Dialer{
		Timeout:         cfg.ConnectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: pgKeepAliveIdle, Interval: 5 * time.Second, Count: 3},
	}
	cfg.DialFunc = dialer.DialContext
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = "csrd"
	cfg.RuntimeParams["idle_in_transaction_session_timeout"] = pgIdleInTxTimeout
	cfg.RuntimeParams["timezone"] = "UTC"
	return cfg, nil
}

// checkTransport refuses a connection that could travel in plaintext to a
// host other than this machine: sslmode disable, allow and prefer (pgx's
// default, as libpq's) all connect without TLS when the server offers
// none, so a man in the middle only has to refuse TLS.
func checkTransport(cfg *pgx.ConnConfig, u *url.URL) error {
	hosts := []*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port, TLSConfig: cfg.TLSConfig}}
	hosts = append(hosts, cfg.Fallbacks...)
	plaintext := false
	for _, h := range hosts {
		plaintext = plaintext || h.TLSConfig == nil
	}
	if !plaintext {
		return nil
	}
	for _, h := range hosts {
		if !localHost(h.Host) {
			mode := u.Query().Get("sslmode")
			if mode == "" {
				if mode = os.Getenv("PGSSLMODE"); mode == "" {
					mode = "prefer"
				}
			}
			return fmt.Errorf("sslmode=%s lets the connection to %s fall back to plaintext; "+
				"use sslmode=verify-full (with sslrootcert=FILE naming your CA if the system's CAs do not cover the server), "+
				"or at least sslmode=require", mode, h.Host)
		}
	}
	return nil
}

// localHost reports a Unix socket directory or a loopback name or address.
func localHost(h string) bool {
	if strings.HasPrefix(h, "/") || h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// openPostgres opens the PostgreSQL database dsn and applies pending
// migrations. The server must be reachable now: csrd starts only with its
// database (later outages are survived, see writer.go). o.existing refuses
// a database without csrd's schema (OpenExisting); o.readOnly opens the
// read pool only, in read-only transactions, and migrates nothing
// (OpenReadOnly).
func openPostgres(ctx context.Context, dsn string, o options) (_ *Store, err error) {
	cfg, err := postgresConfig(dsn, o.password)
	if err != nil {
		return nil, err
	}
	ms, err := loadMigrationsFrom(migrationFS, postgresDialect.migrationsDir)
	if err != nil {
		return nil, err
	}
	s := &Store{d: postgresDialect, node: o.node, now: func() time.Time { return time.Now().UTC() }}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	if o.readOnly {
		cfg.RuntimeParams["default_transaction_read_only"] = "on"
		s.r = openPostgresPool(cfg, max(4, runtime.GOMAXPROCS(0)))
		if err := s.checkExisting(ctx, s.r, dsn); err != nil {
			return nil, err
		}
		return s, checkSchema(ctx, s.r, ms)
	}
	// The writer holds one connection at a time; the second lets Ping and
	// migrations not wait for it.
	s.w = openPostgresPool(cfg, 2)
	if o.existing {
		if err := s.checkExisting(ctx, s.w, dsn); err != nil {
			return nil, err
		}
	}
	if err := migrate(ctx, s.w, ms, s.now, s.d); err != nil {
		return nil, err
	}
	s.r = openPostgresPool(cfg, max(4, runtime.GOMAXPROCS(0)))
	if err := s.startWriter(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// openPostgresPool is a database/sql pool of at most n connections to cfg.
func openPostgresPool(cfg *pgx.ConnConfig, n int) *sql.DB {
	db := sql.OpenDB(pgConnector{stdlib.GetConnector(*cfg)})
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxLifetime(pgConnMaxLifetime)
	return db
}

const pgHasMigrationsTableSQL = `SELECT to_regclass('schema_migrations') IS NOT NULL`

// checkExisting refuses a PostgreSQL database without csrd's
// schema_migrations table: csrctl pointed at the wrong database, or at a
// new one csrd has not started on.
func (s *Store) checkExisting(ctx context.Context, db *sql.DB, dsn string) error {
	if err := isCsrdDatabase(ctx, db, pgHasMigrationsTableSQL); err != nil {
		return fmt.Errorf("store: database %s: %w (csrd creates its schema at its first start; is the URL right?)", Describe(dsn), err)
	}
	return nil
}

// pgConnector hands database/sql connections that rebind every statement
// (see rebind.go) before pgx sees it.
type pgConnector struct{ driver.Connector }

func (c pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return pgConn{conn.(*stdlib.Conn)}, nil
}

// pgConn is pgx's database/sql connection with the store's SQL rebound.
// Its other methods (transactions, ping, session reset) are pgx's.
type pgConn struct{ *stdlib.Conn }

func (c pgConn) Prepare(query string) (driver.Stmt, error) { return c.Conn.Prepare(rebind(query)) }

func (c pgConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.Conn.PrepareContext(ctx, rebind(query))
}

func (c pgConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.ExecContext(ctx, rebind(query), args)
}

func (c pgConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.QueryContext(ctx, rebind(query), args)
}

// pingPostgres proves a write connection and a primary: a standby
// promoted away from, or reached after a failover went wrong, answers
// queries but refuses every write.
func (s *Store) pingPostgres(ctx context.Context) error {
	var standby bool
	if err := s.w.QueryRowContext(ctx, `SELECT pg_is_in_recovery()`).Scan(&standby); err != nil {
		return dbErr("ping", err)
	}
	if standby {
		return fmt.Errorf("%w: ping: the server is a read-only standby", ErrUnavailable)
	}
	var n int
	if err := s.r.QueryRowContext(ctx, pingReadSQL).Scan(&n); err != nil {
		return dbErr("ping", err)
	}
	return nil
}

// classifyPostgres maps a PostgreSQL or connection error to a sentinel,
// or nil.
func classifyPostgres(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "53100": // disk_full
			return ErrStorageFull
		case pe.Code == "40001", pe.Code == "40P01", pe.Code == "55P03": // serialization, deadlock, lock not available
			return ErrBusy
		case strings.HasPrefix(pe.Code, "08"), // connection exceptions
			strings.HasPrefix(pe.Code, "57P"), // shutting down, cannot connect now
			strings.HasPrefix(pe.Code, "53"),  // out of memory, too many connections
			strings.HasPrefix(pe.Code, "58"),  // I/O error on the server
			pe.Code == "25006",                // read_only_sql_transaction: a standby
			pe.Code == "XX001", pe.Code == "XX002":
			return ErrUnavailable
		}
		return nil
	}
	if pgConnLost(err) {
		return ErrUnavailable
	}
	return nil
}

// pgConnLost reports an error that means the connection is gone or could
// not be made, rather than a statement the server refused.
func pgConnLost(err error) bool {
	var (
		ce *pgconn.ConnectError
		ne net.Error
	)
	return errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.Timeout(err) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, pgconn.ErrConnClosed)
}

// pgRetryable: see dialect.retryable.
func pgRetryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01" || strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57P")
	}
	return pgConnLost(err)
}

// pgUnique reports a unique_violation.
func pgUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}
