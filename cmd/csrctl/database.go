package main

import (
	"flag"
	"fmt"

	"github.com/csrd/csrd/config"
)

// dbFlags are -config and -database, for the subcommands that need only
// the database.
type dbFlags struct{ config, database *string }

func addDBFlags(fs *flag.FlagSet) dbFlags {
	return dbFlags{
		config:   fs.String("config", defaultConfigPath, "csrd configuration file (for database)"),
		database: fs.String("database", "", "the database (overrides database from -config)"),
	}
}

// path returns -database, or the database -config names.
func (f dbFlags) path() (string, error) {
	if *f.database != "" {
		return *f.database, nil
	}
	cfg, err := config.Load(*f.config)
	if err != nil {
		return "", fmt.Errorf("%w (pass -config FILE or -database FILE)", err)
	}
	return cfg.Database, nil
}
