package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"

	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/store"
)

// runDB is `csrctl db migrate -from SQLITE [-to postgres://…]`: the move
// from one appliance to a fleet.
func runDB(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "migrate" {
		return usageErr("usage: csrctl db migrate -from FILE [-to postgres://…] [-config FILE]")
	}
	fs := flag.NewFlagSet("db migrate", flag.ContinueOnError)
	cfgPath := fs.String("config", defaultConfigPath, "csrd configuration file (for database and database_password_file)")
	from := fs.String("from", "", "the SQLite database to copy (csrd stopped)")
	to := fs.String("to", "", "the PostgreSQL database, new and empty (default: database from -config)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: csrctl db migrate -from FILE [-to postgres://…] [flags]\n\nCopies every record, certificate fact and audit row of a SQLite database into an\nempty PostgreSQL database, keeping ids (request ids, token labels) and the audit\nchain, which is verified in the target. Stop csrd first. The password comes from\ndatabase_password_file of -config (or PGPASSFILE).\n\nflags:")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args[1:], stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 || *from == "" {
		return usageErr("db migrate needs -from FILE and no arguments")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil && *to == "" {
		return fmt.Errorf("%w (pass -to postgres://… or -config FILE)", err)
	}
	if err != nil {
		cfg = config.Defaults()
	}
	if *to != "" && *to != cfg.Database {
		cfg.Database = *to
	}
	if !cfg.Postgres() {
		return usageErr("the target %q is not a postgres:// URL", store.Describe(cfg.Database))
	}
	ctx := context.Background()
	dst, err := openDatabase(ctx, cfg) // creates the schema in the empty database
	if err != nil {
		return err
	}
	defer dst.Close()
	rep, err := store.CopySQLite(ctx, *from, dst)
	if err != nil {
		return err
	}
	tables := make([]string, 0, len(rep.Tables))
	for t := range rep.Tables {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	for _, t := range tables {
		fmt.Fprintf(stdout, "%s: %d rows\n", t, rep.Tables[t])
	}
	fmt.Fprintf(stdout, "copied %s into %s; audit chain verifies: %d rows, head %s\n",
		*from, store.Describe(cfg.Database), rep.Audit.Rows, orNone(rep.Audit.Head))
	fmt.Fprintln(stdout, "next: set database (and database_password_file) in every node's csrd.yaml and start the nodes;")
	fmt.Fprintln(stdout, "keep the SQLite file as the copy's source until the fleet serves.")
	return nil
}
