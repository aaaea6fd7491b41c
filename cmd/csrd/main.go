// Command csrd is the HSM-backed CSR generation daemon. main only wires:
// configuration, logging, the token, the database, the use cases and the
// HTTP server; then it waits for a signal and shuts everything down in the
// reverse order.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "csrd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg, err := loadConfig(args)
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel)
	// The policy loads first: a broken file stops start-up before the
	// token is touched.
	engine, err := cfg.LoadPolicy()
	if err != nil {
		return err
	}
	pol := policy.NewReloader(engine)
	logPolicy(log, "policy loaded", engine)

	pin, err := cfg.ReadPIN()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// SIGHUP is caught from here on (its default action is to kill).
	reloadOnHUP(ctx, &cfg, pol, log)

	token, err := hsm.Open(ctx, hsm.Config{
		Module:          cfg.HSM.Module,
		TokenLabel:      cfg.HSM.TokenLabel,
		PIN:             pin,
		MaxSessions:     cfg.HSM.MaxSessions,
		PoolWaitTimeout: cfg.HSM.SessionWaitTimeout,
	}, log)
	pin = ""
	if err != nil {
		return err
	}
	// The token is closed last: everything else may still use it.
	defer token.Close()

	db, err := store.Open(ctx, cfg.Database)
	if err != nil {
		return err
	}
	defer db.Close()

	svc := lifecycle.New(token, db, pol, log)
	// Nothing is served yet, so every unfinished operation is a crash's:
	// finish them all (MinAge 0). Orphans are reported, never destroyed here.
	if _, err := svc.Reconcile(ctx, lifecycle.ReconcileOptions{}); err != nil {
		return fmt.Errorf("start-up reconciliation: %w", err)
	}

	srv := &http.Server{
		Handler: api.New(api.Options{
			BasePath:  cfg.BasePath,
			Log:       log,
			Generator: svc,
			Policy:    pol,
			Pending:   svc, Certificates: svc, Keys: svc,
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      cfg.RequestTimeout + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	log.Info().Str("listen", ln.Addr().String()).Str("base_path", cfg.BasePath).
		Str("token", token.Label()).Str("database", cfg.Database).Msg("csrd ready")

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info().Msg("shutting down: finishing in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error().Err(err).Msg("shutdown deadline passed with requests in flight")
	}
	log.Info().Msg("stopped")
	return nil
}

// loadConfig reads -config (if given) and applies flag overrides. There is
// deliberately no flag for the PIN: argv is world-readable in /proc.
func loadConfig(args []string) (config.Config, error) {
	fs := flag.NewFlagSet("csrd", flag.ContinueOnError)
	path := fs.String("config", "", "YAML configuration file")
	listen := fs.String("listen", "", "listen address (overrides listen)")
	basePath := fs.String("base_path", "", "API base path (overrides base_path)")
	database := fs.String("database", "", "SQLite database file (overrides database)")
	logLevel := fs.String("log_level", "", "trace, debug, info, warn or error (overrides log_level)")
	policyFile := fs.String("policy_file", "", "YAML policy file (overrides policy_file)")
	module := fs.String("hsm.module", "", "PKCS#11 module path (overrides hsm.module)")
	tokenLabel := fs.String("hsm.token_label", "", "token label (overrides hsm.token_label)")
	pinFile := fs.String("hsm.pin_file", "", "file holding the token user PIN (overrides hsm.pin_file)")
	maxSessions := fs.Int("hsm.max_sessions", 0, "maximum PKCS#11 sessions (overrides hsm.max_sessions)")
	if err := fs.Parse(args); err != nil {
		return config.Config{}, err
	}
	if fs.NArg() > 0 {
		return config.Config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg := config.Defaults()
	if *path != "" {
		var err error
		if cfg, err = config.Load(*path); err != nil {
			return cfg, err
		}
	}
	for _, o := range []struct {
		dst *string
		v   string
	}{
		{&cfg.Listen, *listen}, {&cfg.BasePath, *basePath}, {&cfg.Database, *database},
		{&cfg.LogLevel, *logLevel}, {&cfg.HSM.Module, *module}, {&cfg.HSM.TokenLabel, *tokenLabel},
		{&cfg.HSM.PINFile, *pinFile}, {&cfg.PolicyFile, *policyFile},
	} {
		if o.v != "" {
			*o.dst = o.v
		}
	}
	if *maxSessions != 0 {
		cfg.HSM.MaxSessions = *maxSessions
	}
	return cfg, cfg.Validate()
}

func newLogger(level string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(os.Stderr).Level(lvl).With().Timestamp().Str("service", "csrd").Logger()
}
