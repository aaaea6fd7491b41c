// Command csrd is the HSM-backed CSR generation daemon. main only wires:
// configuration, logging, the token, the database, the use cases and the
// HTTP server; then it waits for a signal and shuts everything down in the
// reverse order.
package main

import (
	"context"
	"crypto"
	"errors"
	"flag"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/auth"
	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/health"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/sdnotify"
	"github.com/csrd/csrd/store"
	"github.com/csrd/csrd/tlsconfig"
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
	notify, err := sdnotify.New()
	if err != nil {
		log.Warn().Err(err).Msg("not notifying systemd")
	}
	// The policy loads first: a broken file stops start-up before the
	// token is touched.
	engine, err := cfg.LoadPolicy()
	if err != nil {
		return err
	}
	// So does a missing or broken auth file: authentication is never off
	// by accident.
	authOpts, err := authOptions(cfg, log)
	if err != nil {
		return err
	}
	pol := policy.NewReloader(engine)
	logPolicy(log, "policy loaded", engine)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// SIGHUP is caught from here on (its default action is to kill); the
	// TLS material joins the reload once it exists.
	reloads := &reloader{cfg: &cfg, pol: pol, log: log, notify: notify}
	reloads.onHUP(ctx)

	// One token (hsm.token_label) or a pool (hsm.tokens); token is the
	// first, which also holds the TLS key when it is in an HSM. A token
	// that cannot be opened yet does not stop csrd: it serves with the
	// others (or answers 503 until one works) while hsm keeps trying.
	tokens, closeTokens, err := openTokens(ctx, &cfg, log)
	if err != nil {
		return err
	}
	token := tokens[0]
	// The tokens are closed last: everything else may still use them.
	defer closeTokens()

	dbPassword, err := cfg.ReadDatabasePassword()
	if err != nil {
		return err
	}
	nodeName, err := cfg.Node()
	if err != nil {
		return err
	}
	db, err := store.Open(ctx, cfg.Database, store.WithPassword(dbPassword), store.WithNode(nodeName))
	if err != nil {
		return err
	}
	defer db.Close()

	metrics := api.NewMetrics(api.MetricsSources{
		Sessions: sessionStats(tokens), Records: db.CountByState, AuditRows: db.CountAudit,
	})
	pool, members, err := tokenPool(log, metrics, tokens)
	if err != nil {
		return err
	}
	svc := lifecycle.NewPooled(pool, db, pol, log)
	registry, fleet, err := joinFleet(ctx, &cfg, db, tokensReached(pool, tokens, members), log)
	if err != nil {
		return err
	}
	// Work in progress leased by another live node is its to finish.
	svc.SetLeases(registry)
	// Nothing is served yet, so every unfinished operation on a connected
	// token is a crash's: each is reconciled (MinAge 0; orphans reported,
	// never destroyed) and admitted. A token still waiting is reconciled
	// when it connects, before it takes keys (admitWhenConnected).
	waiting, err := admitTokens(ctx, log, svc, tokens, members)
	if err != nil {
		return err
	}
	states := tokenStates(pool, tokens, members)
	go registry.Run(ctx)

	// One definition of "ready" for /readyz and the systemd watchdog.
	ready := health.New(5*time.Second, time.Second,
		health.Check{Name: "hsm", Func: anyTokenPings(pool, tokens, members)},
		health.Check{Name: "database", Func: db.Ping},
		health.Check{Name: "policy", Func: func(context.Context) error {
			if pol.Current() == nil {
				return errors.New("no policy loaded")
			}
			return nil
		}},
	)

	var tlsSrv *tlsconfig.Server
	if cfg.TLS.Enabled() {
		tlsSrv, err = tlsconfig.New(ctx, tlsconfig.Options{
			CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile, ClientCAFile: cfg.TLS.ClientCAFile,
			FindKey: func(ctx context.Context, uri string) (crypto.Signer, error) { return token.FindKeyByURI(ctx, uri) },
		})
		if err != nil {
			return err
		}
		leaf := tlsSrv.Leaf()
		log.Info().Str("subject", leaf.Subject.String()).Time("not_after", leaf.NotAfter).
			Bool("key_in_token", hsm.IsURI(cfg.TLS.KeyFile)).Bool("mtls", tlsSrv.MutualTLS()).Msg("TLS configured")
	}

	handler := api.New(api.Options{
		BasePath:                  cfg.BasePath,
		Log:                       log,
		Generator:                 svc,
		Policy:                    pol,
		Pending:                   svc,
		Certificates:              svc,
		Keys:                      svc,
		Readiness:                 ready,
		TokenStates:               states,
		MaxGenerations:            cfg.GenerationSlots(),
		GenerationWait:            cfg.Limits.GenerationWait,
		MaxGenerationsPerIdentity: cfg.Limits.MaxGenerationsPerIdentity,
		Auth:                      authOpts.Auth,
		NoAuth:                    authOpts.NoAuth,
		Throttle:                  authOpts.Throttle,
		TrustedProxies:            authOpts.TrustedProxies,
		Audit:                     db,
		Metrics:                   metrics,
		Fleet:                     fleet,
	})
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      cfg.RequestTimeout + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ErrorLog:          stdlog.New(log.With().Str("component", "http").Logger(), "", 0),
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	scheme := "http"
	errc := make(chan error, 1)
	if tlsSrv != nil {
		scheme = "https"
		srv.TLSConfig = tlsSrv.Config()
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}
	where := scheme + "://" + ln.Addr().String()
	var pendingAdmissions atomic.Int32
	pendingAdmissions.Store(int32(len(waiting)))
	for _, i := range waiting {
		go admitWhenConnected(ctx, log, svc, tokens[i], members[i], cfg.HSM.ReconnectMaxBackoff, func() {
			ready.Invalidate() // /readyz and STATUS= see it at once
			if pendingAdmissions.Add(-1) == 0 {
				// The same line as a start with every token: from here on
				// csrd is what a healthy start would have made it.
				log.Info().Str("listen", ln.Addr().String()).Str("url", where).
					Int("tokens", len(tokens)).Msg("csrd ready")
			}
		})
	}
	msg := "csrd ready"
	if len(waiting) > 0 {
		msg = "csrd listening; waiting for HSM tokens"
	}
	log.Info().Str("listen", ln.Addr().String()).Str("url", where).Str("base_path", cfg.BasePath).Int("max_generations", cfg.GenerationSlots()).
		Str("token", token.Label()).Int("tokens", len(tokens)).Int("tokens_waiting", len(waiting)).Str("database", store.Describe(cfg.Database)).Msg(msg)
	// READY=1 once the socket serves, migrations are done, the policy is
	// loaded and every token connected at start is reconciled. A token csrd
	// is still waiting for does not hold READY=1 back: start-up has done all
	// it can, and what csrd waits for is in STATUS= (and /readyz) — systemd
	// would otherwise kill it at TimeoutStartSec and restart into the same
	// wait, instead of letting it connect by itself.
	reloads.serving(tlsSrv, where)
	status := sdnotify.Status("serving %s", where)
	if w := waitingFor(states()); w != "" {
		status = sdnotify.Status("serving %s; waiting for HSM (%s)", where, w)
	}
	notifyf(log, notify, sdnotify.Ready, status)
	go watchdog(ctx, log, notify, ready, states, where)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	return shutdown(log, notify, srv, cfg.ShutdownTimeout)
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
	a, err := auth.Open(cfg.Auth.File, log)
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
	return api.Options{Auth: a, Throttle: auth.NewThrottle(cfg.Auth.FailureLimit, cfg.Auth.Lockout), TrustedProxies: proxies}, nil
}

func newLogger(level string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(os.Stderr).Level(lvl).With().Timestamp().Str("service", "csrd").Logger()
}
