package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/csrd/csrd/store"
)

// runBackup is `csrctl backup [-config FILE | -database DB] FILE`: a
// consistent copy of the live database through SQLite's backup API, taken
// while csrd runs.
func runBackup(fs *flag.FlagSet, args []string, stdout, _ io.Writer) error {
	db := addDBFlags(fs)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("backup takes one FILE")
	}
	path, err := db.path()
	if err != nil {
		return err
	}
	if store.IsPostgres(path) {
		return errPostgresBackup
	}
	info, err := store.Backup(context.Background(), path, fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backup %s: %s\n", fs.Arg(0), describeBackup(info))
	return nil
}

// runRestore is `csrctl restore [-config FILE | -database DB] FILE`, with
// csrd stopped.
func runRestore(fs *flag.FlagSet, args []string, stdout, _ io.Writer) error {
	db := addDBFlags(fs)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("restore takes one FILE")
	}
	path, err := db.path()
	if err != nil {
		return err
	}
	if store.IsPostgres(path) {
		return errPostgresBackup
	}
	info, err := store.Restore(context.Background(), fs.Arg(0), path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %s into %s: %s\n", fs.Arg(0), path, describeBackup(info))
	fmt.Fprintln(stdout, "the database knows only what the backup knew. Next: 'csrctl reconcile' lists the keys made")
	fmt.Fprintln(stdout, "since the backup as orphans (kept; -destroy removes them) and marks lost the records whose")
	fmt.Fprintln(stdout, "keys are gone; audit rows written after the backup are not in the restored log.")
	return nil
}

// errPostgresBackup: PostgreSQL has its own, better tools.
var errPostgresBackup = errors.New("the database is PostgreSQL: back it up with pg_dump (a consistent snapshot) or " +
	"continuous WAL archiving (point-in-time recovery), and restore with pg_restore; see docs/operations.md")

func describeBackup(info store.BackupInfo) string {
	return fmt.Sprintf("%d records, %d audit rows, audit head %s (last row %s), schema version %d",
		info.Records, info.AuditRows, orNone(info.AuditHead), orNone(info.AuditLastTime), info.SchemaVersion)
}
