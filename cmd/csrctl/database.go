package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/store"
)

// dbFlags are -config and -database, for the subcommands that need only
// the database.
type dbFlags struct{ config, database *string }

func addDBFlags(fs *flag.FlagSet) dbFlags {
	return dbFlags{
		config:   fs.String("config", defaultConfigPath, "csrd configuration file (for database)"),
		database: fs.String("database", "", "SQLite database file or postgres:// URL (overrides database from -config)"),
	}
}

// resolve returns the configuration with -database applied. Without
// -database the configuration file must load. With it a missing file
// leaves the defaults; database_password_file still comes from the file
// when it loads (else, for PostgreSQL, PGPASSFILE is read).
func (f dbFlags) resolve() (config.Config, error) {
	cfg, err := config.Load(*f.config)
	switch {
	case *f.database == "" && err != nil:
		return cfg, fmt.Errorf("%w (pass -config FILE or -database FILE)", err)
	case *f.database == "":
		return cfg, nil
	case err != nil:
		cfg = config.Defaults()
	}
	cfg.Database = *f.database
	if !cfg.Postgres() {
		cfg.DatabasePasswordFile = ""
	}
	return cfg, nil
}

// path returns -database, or the database -config names.
func (f dbFlags) path() (string, error) {
	cfg, err := f.resolve()
	return cfg.Database, err
}

// openDatabase opens the database cfg names; an existing one only, never
// creating an empty SQLite file (csrd creates it at its first start).
func openDatabase(ctx context.Context, cfg config.Config) (*store.Store, error) {
	if !cfg.Postgres() {
		if _, err := os.Stat(cfg.Database); err != nil {
			return nil, fmt.Errorf("database %s: %w (csrd creates it at its first start)", cfg.Database, err)
		}
	}
	pw, err := cfg.ReadDatabasePassword()
	if err != nil {
		return nil, err
	}
	return store.Open(ctx, cfg.Database, store.WithPassword(pw))
}
