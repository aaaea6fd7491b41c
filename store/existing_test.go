package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The openers for tools never create what they were asked to open.
func TestOpenExistingAndReadOnlyRefuseMissingDatabase(t *testing.T) {
	openers := map[string]func(context.Context, string, ...Option) (*Store, error){
		"OpenExisting": OpenExisting,
		"OpenReadOnly": OpenReadOnly,
	}
	for name, open := range openers {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "no", "such", "dir")
			for _, path := range []string{filepath.Join(dir, "csrd.db"), filepath.Join(filepath.Dir(dir), "csrd.db")} {
				s, err := open(context.Background(), path)
				if err == nil {
					s.Close()
					t.Fatalf("%s(%s) succeeded on a missing database", name, path)
				}
				if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
					t.Errorf("%s(%s) = %v; want fs.ErrNotExist naming the path", name, path, err)
				}
				if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s created %s (stat: %v)", name, path, err)
				}
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s created the directory %s", name, dir)
			}
			if s, err := open(context.Background(), t.TempDir()); err == nil {
				s.Close()
				t.Errorf("%s opened a directory", name)
			}
		})
	}
}

// A SQLite file that is not csrd's is refused, and left as it was.
func TestOpenExistingRefusesForeignDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE notes (x TEXT)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, open := range map[string]func(context.Context, string, ...Option) (*Store, error){"OpenExisting": OpenExisting, "OpenReadOnly": OpenReadOnly} {
		s, err := open(ctx, path)
		if err == nil {
			s.Close()
			t.Fatalf("%s opened a foreign database", name)
		}
		if !strings.Contains(err.Error(), "not a csrd database") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if after, err := os.ReadFile(path); err != nil || !bytes.Equal(before, after) {
		t.Errorf("opening changed the foreign database (%v)", err)
	}
}

// A read-only store reads (beside a live writer, and after a clean close
// removed the WAL), refuses every write, and leaves the file untouched.
func TestOpenReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "csrd.db")
	w, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, w, 3)
	ro, err := OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatalf("OpenReadOnly beside a writer: %v", err)
	}
	appendN(t, w, 1)
	if rep, err := ro.VerifyAudit(ctx); err != nil || rep.Rows != 4 {
		t.Errorf("VerifyAudit beside a writer = %+v, %v", rep, err)
	}
	ro.Close()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	ro, err = OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatalf("OpenReadOnly after a clean close: %v", err)
	}
	if rep, err := ro.VerifyAudit(ctx); err != nil || rep.Rows != 4 {
		t.Errorf("VerifyAudit = %+v, %v", rep, err)
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
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("opening read-only changed the database file")
	}
}

// OpenReadOnly applies no migration: a database csrd has not migrated to
// this binary's schema, or one a newer csrd wrote, is refused.
func TestOpenReadOnlyChecksSchema(t *testing.T) {
	ctx := context.Background()
	ms, err := loadMigrations(migrationFS)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("older", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "csrd.db")
		s, err := open(ctx, path, ms[:len(ms)-1])
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		ro, err := OpenReadOnly(ctx, path)
		if err == nil {
			ro.Close()
			t.Fatal("OpenReadOnly accepted a database without the newest migration")
		}
		if !strings.Contains(err.Error(), "lacks schema versions") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("newer", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "csrd.db")
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.w.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 'x')"); err != nil {
			t.Fatal(err)
		}
		s.Close()
		ro, err := OpenReadOnly(ctx, path)
		var sv *SchemaVersionError
		if !errors.As(err, &sv) || sv.Have != 9999 {
			if ro != nil {
				ro.Close()
			}
			t.Fatalf("OpenReadOnly = %v, want *SchemaVersionError for 9999", err)
		}
	})
}

// OpenExisting on a real database is Open without the creating.
func TestOpenExistingWrites(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)
	appendN(t, s, 1)
	ex, err := OpenExisting(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	appendN(t, ex, 2)
	if rep, err := s.VerifyAudit(ctx); err != nil || rep.Rows != 3 {
		t.Errorf("VerifyAudit = %+v, %v", rep, err)
	}
}
