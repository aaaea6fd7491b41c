package main

import (
	"context"
	"crypto"
	"errors"
	stdlog "log"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/checkpoint"
	"github.com/csrd/csrd/cluster"
	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/enroll"
	"github.com/csrd/csrd/health"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/metrics"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/sdnotify"
	"github.com/csrd/csrd/store"
	"github.com/csrd/csrd/tlsconfig"
)

// app is csrd assembled by newApp: what serve runs and close releases.
type app struct {
	cfg         config.Config
	log         zerolog.Logger
	notify      *sdnotify.Notifier
	reloads     *reloader
	pol         *policy.Reloader
	tokens      []*hsm.Token // the first also holds the TLS key when it is in an HSM
	db          *store.Store
	checkpoints *checkpoint.Checkpointer // the audit log's signed checkpoints
	pool        *lifecycle.TokenPool
	svc         *lifecycle.Service
	node        string            // cluster.node_name, or the host name
	fleet       *cluster.Registry // this node's entry in the node registry
	fwd         *cluster.Forwarder
	enr         *enroll.Service
	waiting     []lifecycle.Token // not connected (or lost) at start: admitted by serve
	ready       *health.Checker
	tls         *tlsconfig.Server // nil: plain HTTP
	handler     http.Handler
	closers     []func() // close runs them last first
}

// newApp builds csrd from cfg. The policy and the auth file load first: a
// broken one stops start-up before the token is touched, and
// authentication is never off by accident. Then the tokens, the database,
// the use cases with the start-up reconciliation, readiness, TLS and the
// HTTP handler. SIGHUP reloads from here on (its default action is to
// kill); ctx ends with SIGINT or SIGTERM. On error what was opened is
// closed again.
func newApp(ctx context.Context, cfg config.Config) (_ *app, err error) {
	a := &app{cfg: cfg, log: newLogger(cfg.LogLevel)}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if a.notify, err = sdnotify.New(); err != nil {
		a.log.Warn().Err(err).Msg("not notifying systemd")
	}
	engine, err := a.cfg.LoadPolicy()
	if err != nil {
		return nil, err
	}
	authOpts, err := authOptions(a.cfg, a.log)
	if err != nil {
		return nil, err
	}
	a.pol = policy.NewReloader(engine)
	logPolicy(a.log, "policy loaded", engine)
	a.reloads = &reloader{cfg: &a.cfg, pol: a.pol, log: a.log, notify: a.notify}
	a.reloads.onHUP(ctx)

	if err := a.open(ctx); err != nil {
		return nil, err
	}
	m := metrics.New(metrics.Sources{
		Sessions: metrics.SumSessions(a.tokens), Records: a.db.CountByState, AuditRows: a.db.CountAudit,
		DB: a.db.Stats,
	})
	m.WatchCheckpoints(func() float64 { return float64(a.checkpoints.Status().Unsigned()) }, a.lastCheckpoint)
	if err := a.startService(ctx, m); err != nil {
		return nil, err
	}
	if err := a.newEnrollment(m); err != nil {
		return nil, err
	}
	a.ready = a.readiness()
	if err := a.loadTLS(ctx); err != nil {
		return nil, err
	}
	a.handler = a.newHandler(authOpts, m)
	return a, nil
}

// open starts the tokens and opens the database. A token that cannot be
// opened yet does not stop csrd: it serves with the others (or answers 503
// until one works) while hsm keeps trying.
func (a *app) open(ctx context.Context) error {
	tokens, closeTokens, err := openTokens(ctx, &a.cfg, a.log)
	if err != nil {
		return err
	}
	// The tokens are closed last: everything else may still use them.
	a.tokens, a.closers = tokens, append(a.closers, closeTokens)
	password, err := a.cfg.ReadDatabasePassword()
	if err != nil {
		return err
	}
	if a.node, err = a.cfg.Node(); err != nil {
		return err
	}
	db, err := store.Open(ctx, a.cfg.Database, store.WithPassword(password), store.WithNode(a.node))
	if err != nil {
		return err
	}
	a.db, a.closers = db, append(a.closers, func() { _ = db.Close() })
	// Checkpoints of the audit log, signed with the first token's audit key;
	// the last one when csrd closes, after the server has stopped and
	// before the database and tokens close.
	var stop func()
	a.checkpoints, stop = startCheckpoints(ctx, a.log, a.node, a.tokens[0], db)
	a.closers = append(a.closers, stop)
	return nil
}

// startService builds the pool and the use cases, registers this node
// and admits the tokens connected now. Nothing is served yet, so every
// unfinished operation on a connected token is a crash's — except work
// another live node leases (a token several nodes share): each is
// reconciled (MinAge 0; orphans reported, never destroyed) and admitted. A
// token still waiting is reconciled when it connects, before it takes keys
// (serve).
func (a *app) startService(ctx context.Context, m *metrics.Metrics) error {
	pool, err := tokenPool(a.log, m, a.tokens)
	if err != nil {
		return err
	}
	a.pool = pool
	a.svc = lifecycle.NewPooled(pool, a.db, a.pol, a.log)
	if a.fleet, a.fwd, err = joinFleet(ctx, &a.cfg, a.node, a.db, tokensReached(pool), a.log); err != nil {
		return err
	}
	a.svc.SetLeases(a.fleet)
	a.waiting, err = a.svc.AdmitConnected(ctx)
	return err
}

// newEnrollment builds enrollment with csrd's CAs. It reads their files now
// (a bad one stops start-up) but contacts no CA: one that is down fails its
// enrollments, never csrd's start. The first token holds the ACME account
// keys; serve runs its background loop.
func (a *app) newEnrollment(m *metrics.Metrics) error {
	var err error
	a.enr, err = enroll.New(enroll.Options{
		CAs: a.cfg.CAs, Records: a.db, Keys: a.svc, Token: lifecycle.HSMToken{Token: a.tokens[0]}, Wait: a.cfg.RequestTimeout,
		CertDir: filepath.Join(filepath.Dir(a.cfg.Database), "certs"), Log: a.log.With().Str("component", "enroll").Logger(),
	})
	if err != nil {
		return err
	}
	return m.Register(a.enr.Metrics())
}

// readiness is the one definition of "ready" for /readyz and the systemd
// watchdog.
func (a *app) readiness() *health.Checker {
	return health.New(5*time.Second, time.Second,
		health.Check{Name: "hsm", Func: a.pool.Ping},
		health.Check{Name: "database", Func: a.db.Ping},
		health.Check{Name: "policy", Func: func(context.Context) error {
			if a.pol.Current() == nil {
				return errors.New("no policy loaded")
			}
			return nil
		}},
	)
}

// loadTLS reads the TLS material when TLS is configured; a key in the HSM
// is found on the first token.
func (a *app) loadTLS(ctx context.Context) error {
	if !a.cfg.TLS.Enabled() {
		return nil
	}
	token := a.tokens[0]
	var err error
	a.tls, err = tlsconfig.New(ctx, tlsconfig.Options{
		CertFile: a.cfg.TLS.CertFile, KeyFile: a.cfg.TLS.KeyFile, ClientCAFile: a.cfg.TLS.ClientCAFile,
		FindKey: func(ctx context.Context, uri string) (crypto.Signer, error) { return token.FindKeyByURI(ctx, uri) },
	})
	if err != nil {
		return err
	}
	leaf := a.tls.Leaf()
	a.log.Info().Str("subject", leaf.Subject.String()).Time("not_after", leaf.NotAfter).
		Bool("key_in_token", hsm.IsURI(a.cfg.TLS.KeyFile)).Bool("mtls", a.tls.MutualTLS()).Msg("TLS configured")
	return nil
}

func (a *app) newHandler(authOpts api.Options, m *metrics.Metrics) http.Handler {
	return api.New(api.Options{
		BasePath:                  a.cfg.BasePath,
		Log:                       a.log,
		Generator:                 a.svc,
		Policy:                    a.pol,
		Pending:                   a.svc,
		Certificates:              a.svc,
		Keys:                      a.svc,
		Enrollment:                a.enr,
		KeyLife:                   a.enr,
		Readiness:                 a.ready,
		TokenStates:               a.pool.States,
		MaxGenerations:            a.cfg.GenerationSlots(),
		GenerationWait:            a.cfg.Limits.GenerationWait,
		MaxGenerationsPerIdentity: a.cfg.Limits.MaxGenerationsPerIdentity,
		Auth:                      authOpts.Auth,
		NoAuth:                    authOpts.NoAuth,
		TrustedProxies:            authOpts.TrustedProxies,
		Audit:                     a.db,
		Metrics:                   m,
		Fleet:                     a.fwd,
	})
}

// serve listens, admits the tokens that were not connected at start as they
// connect, tells systemd, and serves until ctx ends; then it shuts the
// server down in order.
func (a *app) serve(ctx context.Context) error {
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      a.cfg.RequestTimeout + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ErrorLog:          stdlog.New(a.log.With().Str("component", "http").Logger(), "", 0),
	}
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return err
	}
	scheme := "http"
	errc := make(chan error, 1)
	if a.tls != nil {
		scheme = "https"
		srv.TLSConfig = a.tls.Config()
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}
	where := scheme + "://" + ln.Addr().String()
	a.svc.AdmitLate(ctx, a.waiting, a.cfg.HSM.ReconnectMaxBackoff, func(_ lifecycle.Token, left int) {
		a.ready.Invalidate() // /readyz and STATUS= see it at once
		if left == 0 {
			// The same line as a start with every token: from here on
			// csrd is what a healthy start would have made it.
			a.log.Info().Str("listen", ln.Addr().String()).Str("url", where).
				Int("tokens", len(a.tokens)).Msg("csrd ready")
		}
	})
	a.announce(ln.Addr().String(), where)
	go a.fleet.Run(ctx)
	go a.enr.Run(ctx)
	go watchdog(ctx, a.log, a.notify, a.ready, a.pool.States, where)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	return shutdown(a.log, a.notify, srv, a.cfg.ShutdownTimeout)
}

// announce logs that csrd listens and sends READY=1: the socket serves,
// migrations are done, the policy is loaded and every token connected at
// start is reconciled. A token csrd is still waiting for does not hold
// READY=1 back: start-up has done all it can, and what csrd waits for is in
// STATUS= (and /readyz) — systemd would otherwise kill it at
// TimeoutStartSec and restart into the same wait, instead of letting it
// connect by itself.
func (a *app) announce(addr, where string) {
	msg := "csrd ready"
	if len(a.waiting) > 0 {
		msg = "csrd listening; waiting for HSM tokens"
	}
	a.log.Info().Str("listen", addr).Str("url", where).Str("base_path", a.cfg.BasePath).Int("max_generations", a.cfg.GenerationSlots()).
		Str("token", a.tokens[0].Label()).Int("tokens", len(a.tokens)).Int("tokens_waiting", len(a.waiting)).Str("database", store.Describe(a.cfg.Database)).Str("node", a.node).Msg(msg)
	a.reloads.serving(a.tls, where)
	status := sdnotify.Status("serving %s", where)
	if w := lifecycle.WaitingFor(a.pool.States()); w != "" {
		status = sdnotify.Status("serving %s; waiting for HSM (%s)", where, w)
	}
	notifyf(a.log, a.notify, sdnotify.Ready, status)
}

// close releases what newApp opened, the database before the tokens.
func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}
