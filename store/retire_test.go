package store

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
)

func TestRetireIntent(t *testing.T) { forEachBackend(t, testRetireIntent) }

func testRetireIntent(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	id := newKeyIn(t, s, StateMarried)
	audit := &AuditEntry{Actor: "local:ops", AuthMethod: "local", Source: "csrctl", Operation: "retire",
		Result: AuditOK, RecordID: id, KeyLabel: testLabel(id), RequestID: "r1"}
	if err := s.BeginRetire(ctx, id, audit); err != nil {
		t.Fatal(err)
	}
	rec, _ := s.Get(ctx, id)
	if rec.State != StateMarried || rec.Intent != IntentRetire {
		t.Fatalf("after BeginRetire: %s/%q, want married/retire", rec.State, rec.Intent)
	}
	if rows, _ := s.ListAudit(ctx, 0, 10); len(rows) != 1 || rows[0].Operation != "retire" || rows[0].RecordID != id {
		t.Errorf("audit rows after BeginRetire: %+v", rows)
	}
	var be *BusyError
	if err := s.MarkLost(ctx, id, "x", nil); !errors.As(err, &be) || be.Intent != IntentRetire {
		t.Errorf("MarkLost during retire: %v, want *BusyError(retire)", err)
	}
	if err := s.BeginRetire(ctx, id, nil); err != nil {
		t.Errorf("BeginRetire again (a retry continues): %v", err)
	}
	if recs, _ := s.ListByIntent(ctx, IntentRetire); len(recs) != 1 || recs[0].ID != id {
		t.Errorf("ListByIntent(retire) = %v", recs)
	}
	if err := s.FinishRetire(ctx, id, "renewed by record 9"); err != nil {
		t.Fatal(err)
	}
	rec, _ = s.Get(ctx, id)
	if rec.State != StateRetired || rec.Intent != IntentNone || rec.FailReason != "renewed by record 9" || len(rec.Cert.DER) == 0 && rec.Cert.Thumbprint != "" {
		t.Errorf("after FinishRetire: %s/%q/%q", rec.State, rec.Intent, rec.FailReason)
	}
	var te *TransitionError
	for _, st := range []State{StatePending, StateFailed, StateDeleted, StateRetired} {
		other := id
		if st != StateRetired {
			other = newKeyIn(t, s, st)
		}
		if err := s.BeginRetire(ctx, other, nil); !errors.As(err, &te) || te.State != st {
			t.Errorf("BeginRetire(%s) = %v, want *TransitionError", st, err)
		}
	}
	if err := s.BeginRetire(ctx, 9999, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("BeginRetire(unknown) = %v, want ErrNotFound", err)
	}
}

// TestRetiredStateMigration opens a database made before 0040 that holds
// records, migrates it, and checks that the widened CHECKs take 'retired'
// and 'retire' while still refusing unknown values, with nothing else lost:
// SQLite by its schema step, PostgreSQL by its ALTER TABLE.
func TestRetiredStateMigration(t *testing.T) { forEachBackend(t, testRetiredStateMigration) }

func testRetiredStateMigration(t *testing.T, bk backend) {
	ctx := context.Background()
	const insert = `INSERT INTO keys (request_time, updated_time, state, key_label)
VALUES ('2026-01-01T00:00:00.000000000Z', '2026-01-01T00:00:00.000000000Z', 'married', 'csrd-1')`
	old, reopen := openBefore(t, bk, 40)
	if _, err := old.ExecContext(ctx, insert); err != nil {
		t.Fatal(err)
	}
	if _, err := old.ExecContext(ctx, `UPDATE keys SET state = 'retired' WHERE id = 1`); err == nil {
		t.Fatal("the old schema took state 'retired'; the test proves nothing")
	}
	s := reopen()
	for _, q := range []string{
		`UPDATE keys SET intent = 'retire' WHERE id = 1`,
		`UPDATE keys SET state = 'retired', intent = NULL WHERE id = 1`,
	} {
		if _, err := s.w.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, q := range []string{
		`UPDATE keys SET state = 'bogus' WHERE id = 1`,
		`UPDATE keys SET intent = 'bogus' WHERE id = 1`,
	} {
		if _, err := s.w.ExecContext(ctx, q); err == nil || !strings.Contains(strings.ToLower(err.Error()), "check") {
			t.Errorf("%s: %v, want a CHECK failure", q, err)
		}
	}
	rec, err := s.Get(ctx, 1)
	if err != nil || rec.State != StateRetired || rec.KeyLabel != "csrd-1" {
		t.Fatalf("record after the migration: %+v, %v", rec, err)
	}
	if bk.name != "sqlite" {
		return
	}
	// A second connection (the read pool) sees the new definition too.
	var ddl string
	if err := s.r.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE name = 'keys'`).Scan(&ddl); err != nil ||
		!strings.Contains(ddl, "'retired'") || !strings.Contains(ddl, "'retire'") {
		t.Errorf("keys definition: %v\n%s", err, ddl)
	}
}

// openBefore makes a new database of bk with the migrations before version
// only, and returns a connection to it and reopen, which closes that
// connection and opens the database as a Store (migrating it to the end).
func openBefore(t *testing.T, bk backend, version int) (*sql.DB, func() *Store) {
	t.Helper()
	ctx := context.Background()
	d := sqliteDialect
	if bk.name == "postgres" {
		d = postgresDialect
	}
	all, err := loadMigrationsFrom(migrationFS, d.migrationsDir)
	if err != nil {
		t.Fatal(err)
	}
	var before []migration
	for _, m := range all {
		if m.version < version {
			before = append(before, m)
		}
	}
	if bk.name == "sqlite" {
		path := filepath.Join(t.TempDir(), "csrd.db")
		old, err := open(ctx, path, before)
		if err != nil {
			t.Fatal(err)
		}
		return old.w, func() *Store {
			if err := old.Close(); err != nil {
				t.Fatal(err)
			}
			return openCleanup(t, path)
		}
	}
	dsn, pw := newPostgresDB(t), fixture.SharedPostgres(t).Password
	cfg, err := postgresConfig(dsn, pw)
	if err != nil {
		t.Fatal(err)
	}
	db := openPostgresPool(cfg, 2)
	if err := migrate(ctx, db, before, func() time.Time { return time.Now().UTC() }, d); err != nil {
		t.Fatal(err)
	}
	return db, func() *Store {
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		return openCleanup(t, dsn, WithPassword(pw))
	}
}
