package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/policy"
)

// reloadOnHUP re-reads the policy file on every SIGHUP until ctx ends. A
// file that does not load is logged with every problem and the policy in
// force stays: a typo must not take enrollment down or loosen it.
func reloadOnHUP(ctx context.Context, cfg *config.Config, pol *policy.Reloader, log zerolog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				e, err := pol.Reload(cfg.LoadPolicy)
				info := e.Info()
				if err != nil {
					log.Error().Err(err).Str("policy", info.Source).Str("policy_sha256", info.SHA256).
						Msg("policy reload refused; the policy in force stays")
					continue
				}
				logPolicy(log, "policy reloaded", e)
			}
		}
	}()
}

func logPolicy(log zerolog.Logger, msg string, e *policy.Engine) {
	info := e.Info()
	ev := log.Info().Str("policy", info.Source).Str("policy_sha256", info.SHA256).Int("enrollment_patterns", len(e.Patterns()))
	ev.Msg(msg)
	for _, w := range e.Warnings() {
		log.Warn().Str("policy", info.Source).Str("warning", w).Msg("policy warning")
	}
}
