package store

import (
	"context"
	"database/sql"
	"errors"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/mattn/go-sqlite3"
)

// openTest opens a fresh store on a real file in t.TempDir().
func openTest(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "csrd.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, path
}

func TestOpenRejectsNonFilePaths(t *testing.T) {
	for _, path := range []string{"", ":memory:", "file::memory:?cache=shared", "file:csrd.db", "csrd.db?mode=memory", "a#b"} {
		t.Run(path, func(t *testing.T) {
			s, err := Open(context.Background(), path)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded, want error", path)
			}
			if !strings.HasPrefix(err.Error(), "store: ") {
				t.Errorf("error %q lacks the store: prefix", err)
			}
		})
	}
}

func TestOpenCreatesPrivateDirAndFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "csrd")
	path := filepath.Join(dir, "csrd.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	// Write so that the WAL and shared-memory files exist too.
	if _, err := s.BeginKey(context.Background(), &KeyRecord{}, testPrefix); err != nil {
		t.Fatalf("BeginKey: %v", err)
	}
	tests := []struct {
		path string
		mode os.FileMode
	}{
		{dir, 0o700 | os.ModeDir},
		{path, 0o600},
		{path + "-wal", 0o600},
		{path + "-shm", 0o600},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			fi, err := os.Stat(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode(); got != tt.mode {
				t.Errorf("mode = %v, want %v", got, tt.mode)
			}
		})
	}
}

func TestPragmas(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	tests := []struct {
		pool   string
		db     *sql.DB
		pragma string
		want   string
	}{
		{"write", s.w, "journal_mode", "wal"},
		{"write", s.w, "foreign_keys", "1"},
		{"write", s.w, "busy_timeout", "5000"},
		{"write", s.w, "synchronous", "1"}, // NORMAL
		{"write", s.w, "query_only", "0"},
		{"read", s.r, "journal_mode", "wal"},
		{"read", s.r, "foreign_keys", "1"},
		{"read", s.r, "busy_timeout", "5000"},
		{"read", s.r, "query_only", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.pool+"/"+tt.pragma, func(t *testing.T) {
			var got string
			if err := tt.db.QueryRowContext(ctx, "PRAGMA "+tt.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("PRAGMA %s = %q, want %q", tt.pragma, got, tt.want)
			}
		})
	}
	if s.w.Stats().MaxOpenConnections != 1 {
		t.Errorf("write pool MaxOpenConnections = %d, want 1", s.w.Stats().MaxOpenConnections)
	}
	if _, err := s.r.ExecContext(ctx, "DELETE FROM keys"); err == nil {
		t.Error("write through the read pool succeeded, want query_only error")
	}
}

func TestMigrationsIdempotent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "csrd.db")
	ms, err := loadMigrations(migrationFS)
	if err != nil {
		t.Fatal(err)
	}
	var firstID int64
	for i := range 3 {
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("Open #%d: %v", i+1, err)
		}
		var n, max int
		if err := s.r.QueryRowContext(ctx, "SELECT COUNT(*), MAX(version) FROM schema_migrations").Scan(&n, &max); err != nil {
			t.Fatal(err)
		}
		if n != len(ms) || max != ms[len(ms)-1].version {
			t.Errorf("Open #%d: schema_migrations has %d rows, max %d; want %d, %d", i+1, n, max, len(ms), ms[len(ms)-1].version)
		}
		if i == 0 {
			if firstID, err = s.BeginKey(ctx, &KeyRecord{}, testPrefix); err != nil {
				t.Fatal(err)
			}
		} else if _, err := s.Get(ctx, firstID); err != nil {
			t.Errorf("Open #%d lost the record: %v", i+1, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSchemaVersionNewer(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)
	if _, err := s.w.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 'x')"); err != nil {
		t.Fatal(err)
	}
	ms := mustLoad(t)
	known := ms[len(ms)-1].version
	s2, err := Open(ctx, path)
	if err == nil {
		s2.Close()
		t.Fatal("Open succeeded on a newer schema")
	}
	var ve *SchemaVersionError
	if !errors.As(err, &ve) || ve.Have != 999 || ve.Known != known {
		t.Fatalf("err = %v, want *SchemaVersionError{999, %d}", err, known)
	}
	want := "store: database schema version 999 is newer than this csrd (" + strconv.Itoa(known) + ")"
	if err.Error() != want {
		t.Errorf("message = %q, want %q", err.Error(), want)
	}
}

func TestLoadMigrations(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	tests := []struct {
		name     string
		fsys     fstest.MapFS
		versions []int
		wantErr  bool
	}{
		{"ordered by number not listing", fstest.MapFS{
			"migrations/0002_b.sql": file("B"), "migrations/0010_c.sql": file("C"),
			"migrations/0001_a.sql": file("A"), "migrations/0003_d.sql": file("D"),
			"migrations/0004_e.sql": file("E"), "migrations/0005_f.sql": file("F"),
			"migrations/0006_g.sql": file("G"), "migrations/0007_h.sql": file("H"),
			"migrations/0008_i.sql": file("I"), "migrations/0009_j.sql": file("J"),
			"migrations/README.md": file("ignored"),
		}, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, false},
		// Numbers are assigned to parallel work, so 0003 may merge before 0002.
		{"gap", fstest.MapFS{"migrations/0001_a.sql": file("A"), "migrations/0003_c.sql": file("C")}, []int{1, 3}, false},
		{"duplicate", fstest.MapFS{"migrations/0001_a.sql": file("A"), "migrations/0001_b.sql": file("B")}, nil, true},
		{"not starting at 1", fstest.MapFS{"migrations/0002_a.sql": file("A")}, nil, true},
		{"bad name", fstest.MapFS{"migrations/first.sql": file("A")}, nil, true},
		{"empty", fstest.MapFS{"migrations/x.txt": file("")}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := loadMigrations(tt.fsys)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			for i, m := range ms {
				if m.version != tt.versions[i] {
					t.Errorf("ms[%d].version = %d, want %d", i, m.version, tt.versions[i])
				}
			}
		})
	}
	if _, err := loadMigrations(migrationFS); err != nil {
		t.Errorf("embedded migrations: %v", err)
	}
}

// TestMigrationGapFilledLater: a database migrated with 0001 and 0003 gets
// 0002 when a binary that has it opens the file, and a binary without a
// recorded version refuses the file.
func TestMigrationGapFilledLater(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "csrd.db")
	base := mustLoad(t)[:1] // 0001 only: the rest are this tree's own
	top := 1000
	withGap := append(append([]migration{}, base...), migration{version: top + 2, name: "c.sql", sql: "CREATE TABLE c (x)"})
	full := append(append([]migration{}, base...),
		migration{version: top + 1, name: "b.sql", sql: "CREATE TABLE b (x)"}, withGap[1])
	s, err := open(ctx, path, withGap)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = open(ctx, path, full); err != nil {
		t.Fatalf("open with the gap filled: %v", err)
	}
	var n int
	if err := s.r.QueryRowContext(ctx, "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('b', 'c')").Scan(&n); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if n != 2 {
		t.Errorf("%d of tables b, c exist, want 2", n)
	}
	var ve *SchemaVersionError
	if _, err := open(ctx, path, withGap); !errors.As(err, &ve) || ve.Have != top+1 {
		t.Errorf("open by a binary lacking version %d: %v, want *SchemaVersionError", top+1, err)
	}
}

// TestMigrationAtomic checks that a failing migration leaves neither its
// schema changes nor its version row behind.
func TestMigrationAtomic(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "csrd.db")
	known := mustLoad(t)
	ms := append(known, migration{version: known[len(known)-1].version + 1, name: "bad.sql",
		sql: "CREATE TABLE half (x); INSERT INTO nosuchtable VALUES (1);"})
	if s, err := open(ctx, path, ms); err == nil {
		s.Close()
		t.Fatal("open with a failing migration succeeded")
	}
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open after failed migration: %v", err)
	}
	defer s.Close()
	var n int
	if err := s.r.QueryRowContext(ctx, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'half'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Error("table from the failed migration survived")
	}
}

func TestPing(t *testing.T) {
	s, _ := openTest(t)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Ping(cancelled) = %v, want context.Canceled", err)
	}
}

func TestErrorClassification(t *testing.T) {
	tests := []struct {
		code sqlite3.ErrNo
		want error
	}{
		{sqlite3.ErrFull, ErrStorageFull},
		{sqlite3.ErrIoErr, ErrUnavailable},
		{sqlite3.ErrCorrupt, ErrUnavailable},
		{sqlite3.ErrNotADB, ErrUnavailable},
		{sqlite3.ErrCantOpen, ErrUnavailable},
		{sqlite3.ErrReadonly, ErrUnavailable},
		{sqlite3.ErrBusy, ErrBusy},
		{sqlite3.ErrLocked, ErrBusy},
		{sqlite3.ErrConstraint, nil},
	}
	for _, tt := range tests {
		t.Run(tt.code.Error(), func(t *testing.T) {
			err := dbErr("op", sqlite3.Error{Code: tt.code})
			for _, sentinel := range []error{ErrStorageFull, ErrUnavailable, ErrBusy} {
				if got, want := errors.Is(err, sentinel), errors.Is(tt.want, sentinel); got != want {
					t.Errorf("errors.Is(%v, %v) = %v", err, sentinel, got)
				}
			}
			var se sqlite3.Error
			if !errors.As(err, &se) || se.Code != tt.code {
				t.Errorf("cause not kept: %v", err)
			}
		})
	}
}

// TestStorageFull provokes a real SQLITE_FULL by capping the page count.
func TestStorageFull(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	var pages int
	if err := s.w.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	// The write pool has one connection, so the cap applies to every write.
	if _, err := s.w.ExecContext(ctx, "PRAGMA max_page_count = "+strconv.Itoa(pages)); err != nil {
		t.Fatal(err)
	}
	_, err := s.BeginKey(ctx, &KeyRecord{Subject: strings.Repeat("x", 64<<10)}, testPrefix)
	if !errors.Is(err, ErrStorageFull) {
		t.Fatalf("BeginKey on a full database = %v, want ErrStorageFull", err)
	}
}

// TestBusy holds the write lock from another connection (as csrctl might)
// and checks that the wait past the busy timeout surfaces as ErrBusy.
func TestBusy(t *testing.T) {
	s, path := openTest(t)
	ctx := context.Background()
	if _, err := s.w.ExecContext(ctx, "PRAGMA busy_timeout = 50"); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite3", path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := tx.Rollback(); err != nil {
			t.Errorf("releasing the lock: %v", err)
		}
	}()
	if _, err := s.BeginKey(ctx, &KeyRecord{}, testPrefix); !errors.Is(err, ErrBusy) {
		t.Errorf("BeginKey while locked = %v, want ErrBusy", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, ErrBusy) {
		t.Errorf("Ping while locked = %v, want ErrBusy", err)
	}
}

// TestDocGo keeps the package comment where godoc and newcomers look.
func TestDocGo(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "doc.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	if f.Doc == nil || !strings.HasPrefix(f.Doc.Text(), "Package store ") {
		t.Error(`doc.go must start with "Package store ..."`)
	}
}

func mustLoad(t *testing.T) []migration {
	t.Helper()
	ms, err := loadMigrations(migrationFS)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}
