package main

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/health"
	"github.com/csrd/csrd/sdnotify"
)

// This file is the daemon's side of its service manager: watchdog pings and
// the orderly stop on SIGTERM (reload on SIGHUP is in reload.go).

// watchdog sends WATCHDOG=1 at the interval systemd asked for, but only while
// the readiness checks pass: a csrd that cannot reach its token or write its
// database stops petting the watchdog, and systemd restarts it once the
// outage outlasts WatchdogSec (hsm reconnects on its own within that time
// if it can). STATUS= follows readiness either way. Without WATCHDOG_USEC
// it only keeps STATUS= current.
func watchdog(ctx context.Context, log zerolog.Logger, n *sdnotify.Notifier, ready *health.Checker, where string) {
	interval, err := sdnotify.WatchdogInterval()
	pet := err == nil
	if err != nil && !errors.Is(err, sdnotify.ErrNoWatchdog) {
		log.Warn().Err(err).Msg("systemd watchdog misconfigured; not sending pings")
	}
	if !pet {
		if !n.Enabled() {
			return
		}
		interval = 10 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	wasReady := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r := ready.Check(ctx)
		if r.Ready {
			if pet {
				notifyf(log, n, sdnotify.Watchdog)
			}
			if !wasReady {
				log.Info().Msg("ready again")
				notifyf(log, n, sdnotify.Status("serving %s", where))
			}
		} else if wasReady {
			log.Warn().Str("failing", failing(r)).Msg("not ready; withholding watchdog pings")
			notifyf(log, n, sdnotify.Status("not ready (%s failing); serving %s", failing(r), where))
		}
		wasReady = r.Ready
	}
}

func failing(r health.Report) string {
	var names []string
	for name, ok := range r.Checks {
		if !ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// shutdown stops accepting connections, lets requests in flight finish
// within timeout and then closes what is left. The caller's deferred
// closes release the database and, last, the token (which waits for HSM
// calls still running: they cannot be cancelled).
func shutdown(log zerolog.Logger, n *sdnotify.Notifier, srv *http.Server, timeout time.Duration) error {
	notifyf(log, n, sdnotify.Stopping, sdnotify.Status("stopping: finishing requests in flight"))
	log.Info().Dur("deadline", timeout).Msg("shutting down: finishing in-flight requests")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error().Err(err).Msg("shutdown deadline passed with requests in flight; closing their connections")
		_ = srv.Close()
	}
	log.Info().Msg("stopped")
	return nil
}

func notifyf(log zerolog.Logger, n *sdnotify.Notifier, states ...string) {
	if err := n.Notify(states...); err != nil {
		log.Warn().Err(err).Msg("systemd notification failed")
	}
}
