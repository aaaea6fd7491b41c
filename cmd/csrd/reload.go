package main

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/sdnotify"
	"github.com/csrd/csrd/tlsconfig"
)

// reloader handles SIGHUP (systemctl reload): the policy file and, once
// csrd serves TLS, the certificate and key are read again. Whatever does
// not load is logged with every problem and the version in force stays: a
// typo must not take enrollment down or loosen it.
type reloader struct {
	cfg    *config.Config
	pol    *policy.Reloader
	log    zerolog.Logger
	notify *sdnotify.Notifier

	mu    sync.Mutex
	tls   *tlsconfig.Server // nil: plain HTTP, or not serving yet
	where string            // "" until READY=1 was sent
}

// serving records that csrd now serves at where (with tlsSrv, if any), so
// reloads bracket themselves with RELOADING=1 ... READY=1 from now on.
func (r *reloader) serving(tlsSrv *tlsconfig.Server, where string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tls, r.where = tlsSrv, where
}

// onHUP reloads on every SIGHUP until ctx ends.
func (r *reloader) onHUP(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				r.reload(ctx)
			}
		}
	}()
}

func (r *reloader) reload(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.where != "" {
		notifyf(r.log, r.notify, sdnotify.Reloading, sdnotify.Status("reloading"))
		defer notifyf(r.log, r.notify, sdnotify.Ready, sdnotify.Status("serving %s", r.where))
	}
	e, err := r.pol.Reload(r.cfg.LoadPolicy)
	if err != nil {
		info := e.Info()
		r.log.Error().Err(err).Str("policy", info.Source).Str("policy_sha256", info.SHA256).
			Msg("policy reload refused; the policy in force stays")
	} else {
		logPolicy(r.log, "policy reloaded", e)
	}
	if r.tls == nil {
		return
	}
	if err := r.tls.Reload(ctx); err != nil {
		r.log.Error().Err(err).Msg("TLS reload refused; still serving the previous certificate")
		return
	}
	leaf := r.tls.Leaf()
	r.log.Info().Str("subject", leaf.Subject.String()).Time("not_after", leaf.NotAfter).Msg("TLS certificate reloaded")
}

func logPolicy(log zerolog.Logger, msg string, e *policy.Engine) {
	info := e.Info()
	ev := log.Info().Str("policy", info.Source).Str("policy_sha256", info.SHA256).Int("enrollment_patterns", len(e.Patterns()))
	ev.Msg(msg)
	for _, w := range e.Warnings() {
		log.Warn().Str("policy", info.Source).Str("warning", w).Msg("policy warning")
	}
}
