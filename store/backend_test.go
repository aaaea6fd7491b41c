package store

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/csrd/csrd/fixture"
)

// backend is one database the store runs on. The store's contract tests
// (the tests written as testX(t, be)) run against each, so that SQLite and
// PostgreSQL keep the same guarantees: every state transition and
// compare-and-set, the paging queries, the group commit and the audit chain.
type backend struct {
	name string
	open func(t *testing.T) *Store
	// openTwo opens two Stores on one new database: two csrd nodes (or
	// csrd and csrctl) sharing it.
	openTwo func(t *testing.T) (*Store, *Store)
	// dropAuditGuards are the statements that remove the audit tables'
	// append-only triggers (what someone with write access could do).
	dropAuditGuards []string
	// setAuditSeq rewinds the audit sequence to n.
	setAuditSeq func(n int) string
	// auditFault makes every later audit append fail (a trigger that
	// raises), as a full disk or a broken connection would.
	auditFault string
}

var backends = []backend{
	{
		name: "sqlite",
		open: func(t *testing.T) *Store { s, _ := openTest(t); return s },
		openTwo: func(t *testing.T) (*Store, *Store) {
			s, path := openTest(t)
			return s, openCleanup(t, path)
		},
		dropAuditGuards: []string{"DROP TRIGGER audit_no_update", "DROP TRIGGER audit_no_delete"},
		setAuditSeq:     func(n int) string { return fmt.Sprintf("UPDATE sqlite_sequence SET seq = %d WHERE name = 'audit'", n) },
		auditFault:      `CREATE TRIGGER audit_fault BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'injected'); END`,
	},
	{
		name: "postgres",
		open: func(t *testing.T) *Store {
			return openCleanup(t, newPostgresDB(t), WithPassword(fixture.SharedPostgres(t).Password))
		},
		openTwo: func(t *testing.T) (*Store, *Store) {
			dsn, pw := newPostgresDB(t), WithPassword(fixture.SharedPostgres(t).Password)
			return openCleanup(t, dsn, pw), openCleanup(t, dsn, pw)
		},
		dropAuditGuards: []string{"DROP TRIGGER audit_no_update ON audit", "DROP TRIGGER audit_seq_forward ON audit_seq"},
		setAuditSeq:     func(n int) string { return fmt.Sprintf("UPDATE audit_seq SET seq = %d", n) },
		auditFault:      `CREATE TRIGGER audit_fault BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION audit_append_only()`,
	},
}

// forEachBackend runs f once per backend, as subtests named after it. The
// PostgreSQL one is skipped under -short (it needs a server).
func forEachBackend(t *testing.T, f func(t *testing.T, be backend)) {
	t.Helper()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) { f(t, be) })
	}
}

// newPostgresDB creates a fresh database on the package's shared
// PostgreSQL cluster and returns its DSN.
func newPostgresDB(t *testing.T) string {
	t.Helper()
	return fixture.SharedPostgres(t).CreateDB(t, strings.ReplaceAll(t.Name(), "/", "_"))
}

// openCleanup opens database and closes it when the test ends.
func openCleanup(t *testing.T, database string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(context.Background(), database, opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", Describe(database), err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}
