package store

import (
	"database/sql"
	"time"
)

// A Store runs on SQLite (a file path) or PostgreSQL (a postgres:// URL)
// with the same SQL (see rebind) and the same code: one writer goroutine
// that group-commits, compare-and-set transitions, one audit chain. The
// dialect holds the few things that truly differ, named here rather than
// rewritten behind the reader's back.
type dialect struct {
	name          string // "sqlite" or "postgres"
	migrationsDir string // in migrationFS

	// prepare keeps prepared statements per pool (SQLite compiles SQL on
	// every prepare). pgx caches prepared statements per connection
	// itself, so PostgreSQL runs the SQL text.
	prepare bool

	// auditSeqTxSQL reads, inside the appending transaction, the last id
	// handed out on the audit chain (the new row takes the next) and, in
	// the same round trip, the hash of the row with that id, the one the
	// new row chains to. The hash is NULL when that row is not in the
	// statement's snapshot: the log is empty, its tail was deleted, or on
	// PostgreSQL the lock was waited for and the row committed meanwhile;
	// the appender then reads the last row in a statement of its own. On
	// PostgreSQL the statement also takes the row lock on audit_seq that
	// serialises every node's appends until commit — one linear chain
	// across nodes. auditSeqSQL reads the id alone without locking
	// (verification).
	auditSeqTxSQL, auditSeqSQL string

	// insertLabelledKeySQL inserts a record with its label in one
	// statement (the label prefix is its first argument, then
	// insertKeySQL's); "" where the id is known only after the insert and
	// the label is set by a second statement (SQLite, in process: a
	// statement costs no round trip there).
	insertLabelledKeySQL string

	// schemaSteps are the backend's Go steps of migrations, by version
	// (see schemaStep): each runs after its version's file.
	schemaSteps map[int]schemaStep

	// migrationLockSQL runs first in each migration transaction, so that
	// nodes starting together apply each migration once ("" on SQLite,
	// whose IMMEDIATE transactions already exclude each other).
	migrationLockSQL string

	// writeTimeout bounds one group commit's statements. SQLite runs in
	// this process and needs none; a PostgreSQL server behind a broken
	// network would otherwise hold the writer forever.
	writeTimeout time.Duration

	// snapshot is the read transaction that sees one state of the whole
	// database (VerifyAudit). SQLite's deferred BEGIN on a WAL reader does
	// (the first SELECT fixes the snapshot); PostgreSQL's default, READ
	// COMMITTED, takes a new snapshot per statement.
	snapshot *sql.TxOptions

	// retryable reports an error after which a whole group commit may be
	// tried again: nothing was committed (it came before COMMIT) and
	// trying again can succeed (a lost connection, a serialization
	// failure or deadlock). SQLite has none: it waits in its busy handler.
	retryable func(error) bool
}

var sqliteDialect = &dialect{
	name:          "sqlite",
	migrationsDir: "migrations",
	schemaSteps:   sqliteSteps,
	prepare:       true,
	auditSeqTxSQL: auditSeqHeadSQL,
	auditSeqSQL:   auditSeqSQL,
	retryable:     func(error) bool { return false },
}

var postgresDialect = &dialect{
	name:          "postgres",
	migrationsDir: "migrations/postgres",
	schemaSteps:   nil, // 0041 alters its CHECKs in SQL
	// The row lock is held until the group commit's COMMIT: the appends of
	// other nodes wait for it, and then see this node's rows.
	auditSeqTxSQL: `UPDATE audit_seq SET seq = seq + 1
RETURNING seq - 1, (SELECT hash FROM audit WHERE id = audit_seq.seq - 1)`,
	auditSeqSQL:          `SELECT seq FROM audit_seq`,
	insertLabelledKeySQL: insertLabelledKeySQL,
	migrationLockSQL:     `SELECT pg_advisory_xact_lock(7403577001)`, // any constant, the same in every csrd
	writeTimeout:         30 * time.Second,
	snapshot:             &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
	retryable:            pgRetryable,
}

// maxWriteAttempts bounds how often a group commit is tried on a
// retryable error; writeRetryBackoff is the wait before each retry.
const maxWriteAttempts = 3

var writeRetryBackoff = [maxWriteAttempts - 1]time.Duration{100 * time.Millisecond, 400 * time.Millisecond}
