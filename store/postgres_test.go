package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
)

// TestMigrationParity holds SQLite's and PostgreSQL's migrations together:
// the same versions, and once applied the same tables and columns, so an
// operator's or auditor's query reads the same on both and csrctl db
// migrate copies column by column. A new SQLite migration needs its
// PostgreSQL twin in migrations/postgres/ under the same number.
func TestMigrationParity(t *testing.T) {
	lite := mustLoad(t)
	pg, err := loadMigrationsFrom(migrationFS, postgresDialect.migrationsDir)
	if err != nil {
		t.Fatal(err)
	}
	versions := func(ms []migration) (out []int) {
		for _, m := range ms {
			out = append(out, m.version)
		}
		return out
	}
	if !slices.Equal(versions(lite), versions(pg)) {
		t.Fatalf("SQLite migrations %v, PostgreSQL migrations %v: every version needs both", versions(lite), versions(pg))
	}
	t.Run("columns", func(t *testing.T) {
		ps := backends[1].open(t) // skipped under -short
		sq := backends[0].open(t)
		liteCols := columns(t, sq, `SELECT m.name || '.' || p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p
WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'`)
		// audit_seq is PostgreSQL's sqlite_sequence row for the audit chain.
		pgCols := columns(t, ps, `SELECT table_name || '.' || column_name FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name <> 'audit_seq'`)
		if !slices.Equal(liteCols, pgCols) {
			t.Errorf("columns differ:\nSQLite:     %v\nPostgreSQL: %v", liteCols, pgCols)
		}
	})
}

func columns(t *testing.T, s *Store, q string) []string {
	t.Helper()
	rows, err := s.r.QueryContext(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

func TestPostgresConfig(t *testing.T) {
	tests := []struct {
		dsn  string
		want string // "" for accepted, else part of the error
	}{
		{"postgres://csrd@127.0.0.1:5432/csrd?sslmode=disable", ""},
		{"postgres://csrd@localhost/csrd", ""},
		{"postgresql://csrd@[::1]:5432/csrd?sslmode=prefer", ""},
		{"postgres://csrd@db.example.com/csrd?sslmode=verify-full", ""},
		{"postgres://csrd@db.example.com/csrd?sslmode=require", ""},
		{"postgres://csrd@db.example.com/csrd", "sslmode=prefer lets the connection to db.example.com fall back to plaintext; use sslmode=verify-full"},
		{"postgres://csrd@db.example.com/csrd?sslmode=allow", "sslmode=allow"},
		{"postgres://csrd@10.0.0.5/csrd?sslmode=disable", "sslmode=disable"},
		{"postgres://csrd@127.0.0.1,db.example.com/csrd?sslmode=disable", "db.example.com"},
		{"postgres://csrd:hunter2@127.0.0.1/csrd", "holds a password; put it in database_password_file"},
		{"postgres://csrd@127.0.0.1/csrd?password=hunter2", "holds a password"},
		{"postgres://csrd@127.0.0.1/csrd?sslmode=bogus", "sslmode"},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			t.Setenv("PGSSLMODE", "")
			_, err := postgresConfig(tt.dsn, "")
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			case err != nil && strings.Contains(err.Error(), "hunter2"):
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
	if got := Describe("postgres://csrd@db.example.com:5433/csrd?sslmode=verify-full&sslrootcert=/x"); got != "postgres://csrd@db.example.com:5433/csrd" {
		t.Errorf("Describe = %q", got)
	}
}

// TestPostgresOutage stops the server under a Store and starts it again:
// while it is away every write and Ping fails promptly with ErrUnavailable
// (503 for the API), after a bounded number of tries; once it is back the
// same Store writes again, without being reopened, and nothing answered as
// committed is missing.
func TestPostgresOutage(t *testing.T) {
	pg := fixture.StartPostgres(t, fixture.PostgresOptions{})
	ctx := context.Background()
	s := openCleanup(t, pg.CreateDB(t, "outage"), WithPassword(pg.Password))
	var ids []int64
	begin := func() error {
		id, err := s.BeginKey(ctx, &KeyRecord{KeyType: "ECC"}, testPrefix)
		if err == nil {
			ids = append(ids, id)
		}
		return err
	}
	for range 3 {
		if err := begin(); err != nil {
			t.Fatal(err)
		}
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := begin(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("BeginKey with the server stopped: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("a write took %v to fail with the server stopped", d)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.Ping(pctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ping with the server stopped: %v, want ErrUnavailable", err)
	}
	if _, err := s.Get(ctx, ids[0]); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Get with the server stopped: %v, want ErrUnavailable", err)
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	if err := begin(); err != nil {
		t.Fatalf("BeginKey after the server came back: %v", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping after the server came back: %v", err)
	}
	for _, id := range ids {
		if _, err := s.Get(ctx, id); err != nil {
			t.Errorf("record %d: %v", id, err)
		}
	}
}

// OpenExisting and OpenReadOnly on PostgreSQL: an empty database (no
// schema_migrations) is refused rather than given csrd's schema, a
// read-only Store refuses every write (ErrReadOnly, and the server refuses
// one sent through its connections anyway), and a schema this binary does
// not know is a *SchemaVersionError.
func TestPostgresOpenExistingAndReadOnly(t *testing.T) {
	ctx := context.Background()
	pg := fixture.SharedPostgres(t)
	pw := WithPassword(pg.Password)

	empty := pg.CreateDB(t, "existing_empty")
	for name, open := range map[string]func(context.Context, string, ...Option) (*Store, error){
		"OpenExisting": OpenExisting, "OpenReadOnly": OpenReadOnly,
	} {
		s, err := open(ctx, empty, pw)
		if err == nil {
			s.Close()
			t.Fatalf("%s on an empty database succeeded", name)
		}
		if !strings.Contains(err.Error(), "not a csrd database") {
			t.Errorf("%s on an empty database: %v", name, err)
		}
	}

	dsn := newPostgresDB(t)
	w := openCleanup(t, dsn, pw)
	appendN(t, w, 3)
	ex, err := OpenExisting(ctx, dsn, pw)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, ex, 1)
	ex.Close()
	ro, err := OpenReadOnly(ctx, dsn, pw)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if rep, err := ro.VerifyAudit(ctx); err != nil || rep.Rows != 4 {
		t.Errorf("VerifyAudit read-only = %+v, %v", rep, err)
	}
	for what, write := range map[string]func() error{
		"AppendAudit": func() error { return ro.AppendAudit(ctx, &AuditEntry{Operation: "x", Result: AuditOK}) },
		"BeginKey":    func() error { _, err := ro.BeginKey(ctx, &KeyRecord{}, testPrefix); return err },
		"Ping":        func() error { return ro.Ping(ctx) },
	} {
		if err := write(); !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s on a read-only store = %v, want ErrReadOnly", what, err)
		}
	}
	if _, err := ro.r.ExecContext(ctx, "DELETE FROM schema_migrations"); err == nil {
		t.Error("a write through the read-only connection succeeded")
	}

	if _, err := w.w.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 'x')"); err != nil {
		t.Fatal(err)
	}
	newer, err := OpenReadOnly(ctx, dsn, pw)
	var sv *SchemaVersionError
	if !errors.As(err, &sv) || sv.Have != 9999 {
		if newer != nil {
			newer.Close()
		}
		t.Errorf("OpenReadOnly of a newer schema = %v, want *SchemaVersionError for 9999", err)
	}
}
