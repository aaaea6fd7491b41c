// Command csrd is the HSM-backed CSR generation daemon. main only wires:
// configuration, logging, the token, the database, the use cases and the
// HTTP server (newApp, app.go); then it serves until a signal and shuts
// everything down in the reverse order (serve, close).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/auth"
	"github.com/csrd/csrd/config"
)

func main() {
	if printVersion(os.Args[1:], os.Stdout) {
		return
	}
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h: the flags are printed
		}
		fmt.Fprintln(os.Stderr, "csrd:", err)
		os.Exit(1)
	}
}

// run is csrd from its arguments to its exit: configuration, newApp,
// serve until SIGINT or SIGTERM, and close.
func run(args []string) error {
	cfg, err := loadConfig(args)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	a, err := newApp(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.close()
	return a.serve(ctx)
}

// loadConfig reads -config (if given) and applies flag overrides. There is
// deliberately no flag for the PIN: argv is world-readable in /proc.
func loadConfig(args []string) (config.Config, error) {
	fs := flag.NewFlagSet("csrd", flag.ContinueOnError)
	path := fs.String("config", "", "YAML configuration file")
	listen := fs.String("listen", "", "listen address (overrides listen)")
	basePath := fs.String("base_path", "", "API base path (overrides base_path)")
	database := fs.String("database", "", "SQLite database file or postgres:// URL without password (overrides database)")
	logLevel := fs.String("log_level", "", "trace, debug, info, warn or error (overrides log_level)")
	policyFile := fs.String("policy_file", "", "YAML policy file (overrides policy_file)")
	module := fs.String("hsm.module", "", "PKCS#11 module path (overrides hsm.module)")
	tokenLabel := fs.String("hsm.token_label", "", "token label (overrides hsm.token_label)")
	pinFile := fs.String("hsm.pin_file", "", "file holding the token user PIN (overrides hsm.pin_file)")
	maxSessions := fs.Int("hsm.max_sessions", 0, "maximum PKCS#11 sessions (overrides hsm.max_sessions)")
	tlsCert := fs.String("tls.cert_file", "", "TLS certificate chain, PEM (overrides tls.cert_file)")
	tlsKey := fs.String("tls.key_file", "", "TLS private key, PEM file or PKCS#11 URI (overrides tls.key_file)")
	tlsCA := fs.String("tls.client_ca_file", "", "CAs for client certificates, PEM; enables mTLS (overrides tls.client_ca_file)")
	showVersion := fs.Bool("version", false, "print the version and VCS revision, and exit (alone: csrd -version)")
	if err := fs.Parse(args); err != nil {
		return config.Config{}, err
	}
	if *showVersion { // alone, main prints it before anything runs
		return config.Config{}, errors.New("-version is used alone: csrd -version")
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
		{&cfg.HSM.PINFile, *pinFile}, {&cfg.PolicyFile, *policyFile}, {&cfg.TLS.CertFile, *tlsCert},
		{&cfg.TLS.KeyFile, *tlsKey}, {&cfg.TLS.ClientCAFile, *tlsCA},
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

// authOptions opens the auth file, or says loudly that there is none.
func authOptions(cfg config.Config, log zerolog.Logger) (api.Options, error) {
	if cfg.Auth.Mode == config.AuthNone {
		log.Warn().Str("listen", cfg.Listen).Msg("auth.mode is none: every caller on this machine may do everything")
		proxies, err := cfg.TrustedProxyNets()
		return api.Options{NoAuth: true, TrustedProxies: proxies}, err
	}
	a, err := auth.Open(cfg.Auth.File, log, auth.Options{
		Throttle:    auth.NewThrottle(cfg.Auth.FailureLimit, cfg.Auth.Lockout),
		VerifyQueue: cfg.Auth.VerifyQueue, VerifyPerSource: cfg.Auth.VerifyPerSource,
	})
	if errors.Is(err, os.ErrNotExist) {
		return api.Options{}, fmt.Errorf("%w: create it with 'csrctl user add' or 'csrctl token create' "+
			"(or, for development on a loopback address only, set auth.mode: none)", err)
	}
	if err != nil {
		return api.Options{}, err
	}
	proxies, err := cfg.TrustedProxyNets() // validated with the config
	if err != nil {
		return api.Options{}, err
	}
	return api.Options{Auth: a, TrustedProxies: proxies}, nil
}

func newLogger(level string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(os.Stderr).Level(lvl).With().Timestamp().Str("service", "csrd").Logger()
}
