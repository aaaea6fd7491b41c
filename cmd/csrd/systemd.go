package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/health"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/sdnotify"
)

// This file is the daemon's side of its service manager: watchdog pings and
// the orderly stop on SIGTERM (reload on SIGHUP is in reload.go).

// watchdog sends WATCHDOG=1 at the interval systemd asked for while the
// readiness checks *answer* within their deadline, passing or not: a csrd
// that is waiting for its HSM (token gone, PIN refused, module missing) or
// its database is doing its job — it serves 503s, /readyz says why, and it
// connects by itself once the fault is fixed — so systemd must not restart
// it into the same wait. What the watchdog still catches is a hung process:
// a check that does not answer (a PKCS#11 call that never returns, a
// wedged database), or this loop itself not running. STATUS= follows
// readiness and says what csrd waits for. Without WATCHDOG_USEC it only
// keeps STATUS= current.
func watchdog(ctx context.Context, log zerolog.Logger, n *sdnotify.Notifier, ready *health.Checker, states func() map[string]string, where string) {
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
	wasStatus, wasAnswered := "", true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r := ready.Check(ctx)
		if pet && r.Answered {
			notifyf(log, n, sdnotify.Watchdog)
		}
		if r.Answered != wasAnswered {
			if r.Answered {
				log.Info().Msg("readiness checks answer again; watchdog pings resume")
			} else {
				log.Error().Str("failing", failing(r)).Msg("readiness checks do not answer; withholding watchdog pings")
			}
			wasAnswered = r.Answered
		}
		status := "serving " + where
		if !r.Ready {
			status = fmt.Sprintf("not ready (%s failing); serving %s", failing(r), where)
		}
		if w := lifecycle.WaitingFor(states()); w != "" {
			status += "; waiting for HSM (" + w + ")"
		}
		if status != wasStatus {
			switch {
			case wasStatus == "":
			case r.Ready:
				log.Info().Msg("ready again")
			default:
				log.Warn().Str("failing", failing(r)).Str("status", status).Msg("not ready")
			}
			notifyf(log, n, sdnotify.Status("%s", status))
			wasStatus = status
		}
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
