package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/mattn/go-sqlite3"
)

// Backups of the SQLite database go through SQLite's online backup API,
// never a file copy: a copy of a live WAL database taken with cp misses
// the transactions still in the -wal file, or catches a page half
// checkpointed, and restoring a file beside a stale -wal file makes SQLite
// replay that WAL onto the wrong database. The backup API copies the pages
// of one read transaction — a snapshot that csrd's writes, which continue
// meanwhile, do not change — and a restore writes through SQLite into the
// live file, WAL included.

// BackupInfo describes a database copy.
type BackupInfo struct {
	Pages         int    // database pages copied
	SchemaVersion int    // highest migration the copy records
	Records       int64  // key records
	AuditRows     int64  // audit rows
	AuditHead     string // hash of the last audit row, "" for none
	AuditLastTime string // time of the last audit row, as stored
}

// backupParams open the database a backup reads or a restore reads from:
// the same busy timeout as csrd's pools, and never a write.
const backupParams = "_busy_timeout=5000&_query_only=on"

// Backup writes a consistent copy of the live database at src to the new
// file dst (created 0600; an existing file is refused, so a backup never
// overwrites another). csrd may keep running and writing meanwhile: the
// copy is the database as one read transaction saw it. The copy is checked
// (integrity, schema, audit head) before Backup returns.
func Backup(ctx context.Context, src, dst string) (BackupInfo, error) {
	srcAbs, err := existingPath(src)
	if err != nil {
		return BackupInfo{}, err
	}
	dstAbs, err := checkPath(dst)
	if err != nil {
		return BackupInfo{}, err
	}
	// A shared lock, as a Store holds: a restore cannot start under it.
	lock, err := lockFile(srcAbs, false)
	if err != nil {
		return BackupInfo{}, err
	}
	defer lock.Close()
	f, err := os.OpenFile(dstAbs, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("store: backup: %w", err)
	}
	f.Close()
	info, err := copyDatabase(ctx, srcAbs, dstAbs, "_journal_mode=DELETE")
	if err == nil {
		info, err = InspectBackup(ctx, dstAbs)
	}
	if err != nil {
		os.Remove(dstAbs)
		return BackupInfo{}, err
	}
	return info, nil
}

// Restore replaces the database at dst with the backup at src. It refuses
// while any Store has dst open — a running csrd or csrctl holds its lock —
// and refuses a backup that does not check out (InspectBackup), including
// one made by a newer csrd. dst and its directory are created when missing.
// The restored database is what the backup holds, nothing more: see
// docs/operations.md for what that means against the token.
func Restore(ctx context.Context, src, dst string) (BackupInfo, error) {
	srcAbs, err := existingPath(src)
	if err != nil {
		return BackupInfo{}, err
	}
	info, err := InspectBackup(ctx, srcAbs)
	if err != nil {
		return info, err
	}
	dstAbs, err := checkPath(dst)
	if err != nil {
		return info, err
	}
	if dstAbs == srcAbs {
		return info, fmt.Errorf("store: restore: %s is the database itself", src)
	}
	if err := os.MkdirAll(filepath.Dir(dstAbs), 0o700); err != nil {
		return info, fmt.Errorf("store: restore: %w", err)
	}
	f, err := os.OpenFile(dstAbs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return info, fmt.Errorf("store: restore: %w", err)
	}
	f.Close()
	lock, err := lockFile(dstAbs, true)
	if err != nil {
		return info, err
	}
	defer lock.Close()
	if _, err := copyDatabase(ctx, srcAbs, dstAbs, writeParams); err != nil {
		return info, err
	}
	return info, nil
}

// InspectBackup checks a database copy without changing it — SQLite's
// integrity check, a schema this csrd knows — and says what it holds.
func InspectBackup(ctx context.Context, path string) (BackupInfo, error) {
	abs, err := existingPath(path)
	if err != nil {
		return BackupInfo{}, err
	}
	db, err := sql.Open("sqlite3", abs+"?"+backupParams)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("store: inspect backup: %w", err)
	}
	defer db.Close()
	var info BackupInfo
	var check string
	if err := db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&check); err != nil {
		return info, dbErr("inspect backup", err)
	}
	if check != "ok" {
		return info, fmt.Errorf("%w: backup %s fails SQLite's integrity check: %s", ErrUnavailable, path, check)
	}
	ms, err := loadMigrations(migrationFS)
	if err != nil {
		return info, err
	}
	applied, err := appliedVersions(ctx, db)
	if err != nil {
		return info, fmt.Errorf("store: %s is not a csrd database: %w", path, err)
	}
	known := map[int]bool{}
	for _, m := range ms {
		known[m.version] = true
	}
	for v := range applied {
		if !known[v] {
			return info, &SchemaVersionError{Have: v, Known: ms[len(ms)-1].version}
		}
		info.SchemaVersion = max(info.SchemaVersion, v)
	}
	for _, q := range []struct {
		sql string
		dst any
	}{
		{`SELECT COUNT(*) FROM keys`, &info.Records},
		{countAuditSQL, &info.AuditRows},
		{`PRAGMA page_count`, &info.Pages},
	} {
		if err := db.QueryRowContext(ctx, q.sql).Scan(q.dst); err != nil {
			return info, dbErr("inspect backup", err)
		}
	}
	err = db.QueryRowContext(ctx, `SELECT hash, time FROM audit ORDER BY id DESC LIMIT 1`).Scan(&info.AuditHead, &info.AuditLastTime)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return info, dbErr("inspect backup", err)
	}
	return info, nil
}

// copyDatabase copies every page of src into dst with the backup API, in
// one step: one read transaction on src, so the copy is one snapshot. (A
// step-by-step copy restarts whenever another connection writes to src
// between steps, which under steady load it always does.)
func copyDatabase(ctx context.Context, src, dst, dstParams string) (BackupInfo, error) {
	sdb, err := sql.Open("sqlite3", src+"?"+backupParams)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("store: backup: %w", err)
	}
	defer sdb.Close()
	ddb, err := sql.Open("sqlite3", dst+"?"+dstParams)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("store: backup: %w", err)
	}
	defer ddb.Close()
	sc, err := sdb.Conn(ctx)
	if err != nil {
		return BackupInfo{}, dbErr("backup", err)
	}
	defer sc.Close()
	dc, err := ddb.Conn(ctx)
	if err != nil {
		return BackupInfo{}, dbErr("backup", err)
	}
	defer dc.Close()
	var info BackupInfo
	err = dc.Raw(func(d any) error {
		return sc.Raw(func(s any) error {
			dconn, ok1 := d.(*sqlite3.SQLiteConn)
			sconn, ok2 := s.(*sqlite3.SQLiteConn)
			if !ok1 || !ok2 {
				return errors.New("store: backup: not a SQLite connection")
			}
			var err error
			info.Pages, err = backupPages(ctx, dconn, sconn)
			return err
		})
	})
	return info, err
}

// backupPages copies every page of s into d and returns how many.
func backupPages(ctx context.Context, d, s *sqlite3.SQLiteConn) (int, error) {
	b, err := d.Backup("main", s, "main")
	if err != nil {
		return 0, dbErr("backup", err)
	}
	for {
		done, err := b.Step(-1)
		if err != nil {
			b.Close()
			return 0, dbErr("backup", err)
		}
		if done {
			break
		}
		// Busy or locked (a checkpoint, or a writer in another process
		// holding what the copy needs): wait, then retry.
		select {
		case <-ctx.Done():
			b.Close()
			return 0, dbErr("backup", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	pages := b.PageCount()
	return pages, dbErr("backup", b.Close())
}

// existingPath is checkPath for a file that must already exist: a backup
// of, or restore from, a missing file must not create an empty database.
func existingPath(path string) (string, error) {
	abs, err := checkPath(path)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("store: %s: no such database file", path)
	case err != nil:
		return "", fmt.Errorf("store: %w", err)
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("store: %s: not a regular file", path)
	}
	return abs, nil
}
