package main

import (
	"context"
	"flag"
	"fmt"

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

// openDatabase opens csrd's existing database, the one cfg names, for
// writing; csrctl never creates one (a missing SQLite file, or a
// PostgreSQL database without csrd's schema, is an error naming it).
func openDatabase(ctx context.Context, cfg config.Config) (*store.Store, error) {
	pw, err := cfg.ReadDatabasePassword()
	if err != nil {
		return nil, err
	}
	return store.OpenExisting(ctx, cfg.Database, store.WithPassword(pw))
}

// openReadOnly opens csrd's existing database for reading only: the
// commands that only read never change, create or migrate it.
func openReadOnly(ctx context.Context, cfg config.Config) (*store.Store, error) {
	pw, err := cfg.ReadDatabasePassword()
	if err != nil {
		return nil, err
	}
	return store.OpenReadOnly(ctx, cfg.Database, store.WithPassword(pw))
}
