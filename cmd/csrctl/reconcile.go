package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/cluster"
	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
)

// runReconcile is `csrctl reconcile [-config FILE] [-destroy] [-min-age D]`.
// It reads csrd's configuration, opens the same token and database and runs
// lifecycle.Reconcile. It may run while csrd runs: records changed within
// -min-age are left to csrd. Every key it destroys and certificate it binds
// has its audit row, with the operator (local:<login>) as actor.
func runReconcile(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	path := fs.String("config", defaultConfigPath, "csrd configuration file")
	destroy := fs.Bool("destroy", false, "destroy orphan objects (objects labelled csrd-<id> or csrd-<id>-alt that no record accounts for); without it they are only listed")
	minAge := fs.Duration("min-age", 0, "leave alone records changed more recently than this, which a running csrd may still be working on (default: twice request_timeout)")
	logLevel := fs.String("log_level", "error", "level of the JSON log on stderr")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected arguments %q", fs.Args())
	}
	lvl, err := zerolog.ParseLevel(*logLevel)
	if err != nil {
		return usageErr("-log_level %q: %v", *logLevel, err)
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if *minAge == 0 {
		*minAge = 2 * cfg.RequestTimeout
	}
	keep, err := tlsKeyURIs(cfg.TLS)
	if err != nil {
		return err
	}
	log := zerolog.New(stderr).Level(lvl).With().Timestamp().Str("service", "csrctl").Logger()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	pool, closeTokens, err := openPool(ctx, &cfg, log)
	if err != nil {
		return err
	}
	defer closeTokens()

	svc := lifecycle.NewPooled(pool, db, policy.Default(), log)
	if cfg.Postgres() {
		// In a fleet, work in progress leased by a live node is that
		// node's to finish, whatever its age. csrctl is no node: it holds
		// no lease and registers nothing.
		svc.SetLeases(cluster.NewRegistry(db, cluster.Options{Timeout: cfg.Cluster.NodeTimeout, Log: log}))
	}
	// What it destroys or binds is audited under the operator's name, one
	// request id for the run.
	rep, err := svc.Reconcile(ctx, lifecycle.ReconcileOptions{
		DestroyOrphans: *destroy, MinAge: *minAge, Keep: keep, Audit: *localRow(localActor(), ""),
	})
	printReport(stdout, rep, *destroy, *minAge)
	return err
}

// tlsKeyURIs names the token object tls.key_file points at, if any: the
// server's TLS key is never an orphan candidate.
func tlsKeyURIs(t config.TLS) ([]hsm.URI, error) {
	if !hsm.IsURI(t.KeyFile) {
		return nil, nil
	}
	u, err := hsm.ParseURI(t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.key_file: %w", err)
	}
	return []hsm.URI{u}, nil
}

func printReport(w io.Writer, rep lifecycle.ReconcileReport, destroy bool, minAge time.Duration) {
	fmt.Fprintf(w, "checked %d records against %d csrd objects in the token\n", rep.Records, rep.Objects)
	line := func(n int, what string) {
		if n > 0 {
			fmt.Fprintf(w, "%d %s\n", n, what)
		}
	}
	line(rep.Interrupted, fmt.Sprintf("interrupted generates marked failed (%d keys destroyed)", rep.KeysDestroyed))
	line(rep.DeletesFinished, "interrupted deletes finished")
	line(rep.MarriagesFinished, "interrupted certificate imports finished")
	line(rep.RetiresFinished, "interrupted retirements finished")
	line(rep.MarriagesAborted, "interrupted certificate imports could not be finished (see the log)")
	line(rep.InProgress, fmt.Sprintf("records changed within %v left to csrd", minAge))
	line(rep.OtherToken, "records on another token not checked")
	for _, id := range rep.CertsRestored {
		fmt.Fprintf(w, "restored: certificate object of record %d written to the token again\n", id)
	}
	for _, l := range rep.Lost {
		fmt.Fprintf(w, "lost: %s; marked lost\n", l)
	}
	for _, o := range rep.Orphans {
		state := "kept (run with -destroy to remove)"
		switch {
		case o.Destroyed:
			state = "destroyed"
		case o.Foreign:
			state = "kept: csrd never destroys an object whose label it did not give; remove it by hand if it is not needed"
		}
		fmt.Fprintf(w, "orphan: %s; %s\n", o, state)
	}
	if len(rep.Lost)+len(rep.Orphans) == 0 {
		fmt.Fprintln(w, "token and database agree")
	} else if !destroy && len(rep.Orphans) > 0 {
		fmt.Fprintf(w, "%d orphans listed, none destroyed\n", len(rep.Orphans))
	}
}
