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

// runDBMigrate is `csrctl db migrate -from SQLITE [-to postgres://…]`:
// the move from one appliance to a fleet.
func runDBMigrate(fs *flag.FlagSet, args []string, stdout, _ io.Writer) error {
	cfgPath := fs.String("config", defaultConfigPath, "csrd configuration file (for database and database_password_file)")
	from := fs.String("from", "", "the SQLite database to copy (csrd stopped)")
	to := fs.String("to", "", "the PostgreSQL database, new and empty (default: database from -config)")
	if err := parseFlags(fs, args, stdout); err != nil {
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
	pw, err := cfg.ReadDatabasePassword()
	if err != nil {
		return err
	}
	// Open, not OpenExisting: the target is new and gets csrd's schema here;
	// CopySQLite refuses it if it holds records.
	dst, err := store.Open(ctx, cfg.Database, store.WithPassword(pw))
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
