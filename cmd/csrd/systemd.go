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
	interval, pet, run := watchdogInterval(log, n)
	if !run {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	w := &watchdogState{log: log, n: n, pet: pet, answered: true}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r := ready.Check(ctx)
		w.ping(r)
		w.setStatus(r, statusLine(r, states(), where))
	}
}

// watchdogInterval returns how often the watchdog loop runs: at systemd's
// watchdog interval, pinging it (pet); without WATCHDOG_USEC every 10s, for
// STATUS= only; and not at all (run false) without a notify socket.
func watchdogInterval(log zerolog.Logger, n *sdnotify.Notifier) (interval time.Duration, pet, run bool) {
	interval, err := sdnotify.WatchdogInterval()
	if err == nil {
		return interval, true, true
	}
	if !errors.Is(err, sdnotify.ErrNoWatchdog) {
		log.Warn().Err(err).Msg("systemd watchdog misconfigured; not sending pings")
	}
	return 10 * time.Second, false, n.Enabled()
}

// watchdogState is what the watchdog loop remembers between ticks, so that
// it logs and notifies changes rather than every tick.
type watchdogState struct {
	log      zerolog.Logger
	n        *sdnotify.Notifier
	pet      bool
	answered bool   // the last checks answered within their deadline
	status   string // the last STATUS= sent; "" before the first
}

// ping sends WATCHDOG=1 when the checks answered, and logs when they stop
// or start answering again.
func (w *watchdogState) ping(r health.Report) {
	if w.pet && r.Answered {
		notifyf(w.log, w.n, sdnotify.Watchdog)
	}
	if r.Answered == w.answered {
		return
	}
	if r.Answered {
		w.log.Info().Msg("readiness checks answer again; watchdog pings resume")
	} else {
		w.log.Error().Str("failing", failing(r)).Msg("readiness checks do not answer; withholding watchdog pings")
	}
	w.answered = r.Answered
}

// setStatus sends STATUS= when it changed and logs the change of
// readiness (not the first status: start-up logs its own).
func (w *watchdogState) setStatus(r health.Report, status string) {
	if status == w.status {
		return
	}
	switch {
	case w.status == "":
	case r.Ready:
		w.log.Info().Msg("ready again")
	default:
		w.log.Warn().Str("failing", failing(r)).Str("status", status).Msg("not ready")
	}
	notifyf(w.log, w.n, sdnotify.Status("%s", status))
	w.status = status
}

// statusLine is STATUS=: serving or not ready (and what fails), and which
// tokens csrd waits for.
func statusLine(r health.Report, states map[string]string, where string) string {
	status := "serving " + where
	if !r.Ready {
		status = fmt.Sprintf("not ready (%s failing); serving %s", failing(r), where)
	}
	if w := lifecycle.WaitingFor(states); w != "" {
		status += "; waiting for HSM (" + w + ")"
	}
	return status
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
