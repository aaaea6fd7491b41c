package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// openUnmanaged opens a store the test closes itself.
func openUnmanaged(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "csrd.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

// TestBackupUnderLoadAndRestore takes a backup while writers commit records
// and audit rows without pause, and checks that the copy is one consistent
// snapshot (integrity, a verifying audit chain, no record half written),
// that a restore is refused while a Store has the target open, and that a
// restore with the database closed brings back exactly the copy.
func TestBackupUnderLoadAndRestore(t *testing.T) {
	ctx := context.Background()
	s, path := openUnmanaged(t)
	defer s.Close()
	var stop atomic.Bool
	var wg sync.WaitGroup
	var written atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				if err := writeGenerateRecord(ctx, s, w*1_000_000+i); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				written.Add(1)
			}
		}()
	}
	for written.Load() < 50 {
		time.Sleep(time.Millisecond)
	}
	dst := filepath.Join(t.TempDir(), "backup.db")
	info, err := Backup(ctx, path, dst)
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if info.Records == 0 || info.AuditRows == 0 || info.AuditHead == "" {
		t.Fatalf("backup info %+v: want records and audit rows", info)
	}
	if info.Records >= written.Load() {
		t.Fatalf("backup has %d records of %d written: writes did not go on during the backup", info.Records, written.Load())
	}
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v; want mode 0600", fi, err)
	}
	if _, err := os.Stat(dst + "-wal"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("backup left a -wal file beside the copy: %v", err)
	}
	if _, err := Backup(ctx, path, dst); err == nil {
		t.Error("a second backup overwrote the first")
	}

	// The live database has moved on; a restore must refuse while it is open.
	if _, err := Restore(ctx, dst, path); !errors.Is(err, ErrInUse) {
		t.Fatalf("Restore with the database open: %v, want ErrInUse", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := Restore(ctx, dst, path)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got != info {
		t.Errorf("Restore reports %+v, Backup %+v", got, info)
	}
	r, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	counts, err := r.CountByState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Each writer has at most one record begun and not completed; every
	// completed one carries its audit row (the same transaction).
	if int64(counts[StatePending]+counts[StateGenerating]) != info.Records || counts[StateGenerating] > 4 ||
		int64(counts[StatePending]) != info.AuditRows {
		t.Errorf("restored counts %v, backup %+v: want %d records, at most one generating per writer, an audit row per pending one",
			counts, info, info.Records)
	}
	rep, err := r.VerifyAudit(ctx)
	if err != nil {
		t.Fatalf("restored audit chain: %v", err)
	}
	if rep.Head != info.AuditHead || rep.Rows != info.AuditRows {
		t.Errorf("restored audit %+v, backup head %s rows %d", rep, info.AuditHead, info.AuditRows)
	}
}

func TestBackupRefusals(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	notDB := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(notDB, []byte("not a database, not at all, not even close to one"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		fn   func() error
	}{
		{"backup of a missing database", func() error {
			_, err := Backup(ctx, filepath.Join(dir, "missing.db"), filepath.Join(dir, "b1.db"))
			return err
		}},
		{"restore of a missing backup", func() error {
			_, err := Restore(ctx, filepath.Join(dir, "missing.db"), filepath.Join(dir, "live.db"))
			return err
		}},
		{"restore of a file that is no database", func() error {
			_, err := Restore(ctx, notDB, filepath.Join(dir, "live.db"))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.fn(); err == nil {
				t.Fatal("succeeded, want an error")
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a refused backup created the database it was asked to copy")
	}

	// A backup by a newer csrd (a migration this binary lacks) is refused.
	s, path := openTest(t)
	if _, err := s.w.ExecContext(ctx, insertMigrationSQL, 9999, formatTime(s.now())); err != nil {
		t.Fatal(err)
	}
	newer := filepath.Join(dir, "newer.db")
	if _, err := Backup(ctx, path, newer); err == nil {
		t.Fatal("Backup of a database with an unknown schema version succeeded")
	}
	var sv *SchemaVersionError
	if _, err := copyDatabase(ctx, path, newer, "_journal_mode=DELETE"); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(ctx, newer, filepath.Join(dir, "live.db")); !errors.As(err, &sv) {
		t.Errorf("Restore of a newer schema: %v, want *SchemaVersionError", err)
	}
}

// TestOpenRefusedDuringRestore: while a restore holds the database, a Store
// cannot open it (and so csrd cannot start halfway through a restore).
func TestOpenRefusedDuringRestore(t *testing.T) {
	s, path := openUnmanaged(t)
	s.Close()
	lock, err := lockFile(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if s2, err := Open(context.Background(), path); !errors.Is(err, ErrInUse) {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("Open during a restore: %v, want ErrInUse", err)
	}
}
