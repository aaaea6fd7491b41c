package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
)

// openTokens starts every configured token (hsm.token_label, or each of
// hsm.tokens) in configuration order, with the function that closes them
// all. A token that cannot be opened yet (module, token or PIN missing, PIN
// refused) is returned waiting for it: hsm keeps trying (see hsm.Start).
func openTokens(ctx context.Context, cfg *config.Config, log zerolog.Logger) ([]*hsm.Token, func(), error) {
	return hsm.StartAll(ctx, hsm.Config{
		Module:          cfg.HSM.Module,
		MaxSessions:     cfg.HSM.MaxSessions,
		PoolWaitTimeout: cfg.HSM.SessionWaitTimeout,
		HealthInterval:  cfg.HSM.HealthInterval,
		ReconnectMax:    cfg.HSM.ReconnectMaxBackoff,
	}, credentials(cfg), log)
}

// credentials names each configured token with the PIN file it logs in with.
func credentials(cfg *config.Config) []hsm.Credential {
	var creds []hsm.Credential
	for _, tc := range cfg.HSM.TokenList() {
		creds = append(creds, hsm.Credential{
			TokenLabel: tc.TokenLabel,
			PIN:        func() (string, error) { return cfg.ReadTokenPIN(tc) },
		})
	}
	return creds
}

// tokenPool is the pool lifecycle places keys in, each token timed for
// the metrics; members[i] is toks[i]'s member. Every member starts withheld:
// admitTokens reconciles each before Generate may use it.
func tokenPool(log zerolog.Logger, m *api.Metrics, toks []*hsm.Token) (*lifecycle.TokenPool, []lifecycle.Token, error) {
	members := make([]lifecycle.Token, len(toks))
	for i, t := range toks {
		members[i] = lifecycle.Timed(lifecycle.HSMToken{Token: t}, m)
	}
	pool, err := lifecycle.NewTokenPool(log, members...)
	if err != nil {
		return nil, nil, err
	}
	for _, mb := range members {
		pool.Withhold(mb)
	}
	return pool, members, nil
}

// admitTokens runs the start-up reconciliation of every token connected
// now — before anything is served: nothing can be in progress, so it
// finishes every interrupted operation — and returns the members still
// waiting for their token. A token that fails while being reconciled
// joins them; any other failure stops csrd.
func admitTokens(ctx context.Context, log zerolog.Logger, svc *lifecycle.Service, toks []*hsm.Token, members []lifecycle.Token) ([]int, error) {
	var waiting []int
	for i, t := range toks {
		if t.Healthy() != nil {
			waiting = append(waiting, i)
			continue
		}
		if _, err := svc.Admit(ctx, members[i]); err != nil {
			if t.Healthy() != nil || errors.Is(err, hsm.ErrUnavailable) {
				log.Warn().Err(err).Str("token", t.Label()).Msg("token lost during start-up reconciliation; waiting for it")
				waiting = append(waiting, i)
				continue
			}
			return nil, fmt.Errorf("start-up reconciliation of token %q: %w", t.Label(), err)
		}
	}
	return waiting, nil
}

// admitWhenConnected waits for tok's first connection, runs its
// reconciliation and admits it to the pool (lifecycle.Service.Admit), so no
// Generate lands on a token whose crash leftovers are not cleaned up. A
// reconciliation that fails (the token went away again) is retried with
// the reconnect backoff. onAdmit runs once it is in.
func admitWhenConnected(ctx context.Context, log zerolog.Logger, svc *lifecycle.Service, tok *hsm.Token, member lifecycle.Token, maxBackoff time.Duration, onAdmit func()) {
	select {
	case <-ctx.Done():
		return
	case <-tok.Connected():
	}
	backoff := hsm.DefaultReconnectMin
	for {
		_, err := svc.Admit(ctx, member)
		if err == nil {
			onAdmit()
			return
		}
		log.Warn().Err(err).Str("token", tok.Label()).Dur("retry_in", backoff).Msg("reconciliation of a newly connected token failed; retrying")
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// tokenStates says for /readyz and STATUS= what each token is doing, in
// hsm's fixed phrases (no path, PIN or code).
func tokenStates(pool *lifecycle.TokenPool, toks []*hsm.Token, members []lifecycle.Token) func() map[string]string {
	return func() map[string]string {
		out := make(map[string]string, len(toks))
		for i, t := range toks {
			switch err := t.Healthy(); {
			case err != nil:
				out[t.Label()] = strings.TrimPrefix(hsm.Reason(err), fmt.Sprintf("token %q: ", t.Label()))
			case !pool.Admitted(members[i]):
				out[t.Label()] = "connected; reconciling before it takes new keys"
			default:
				out[t.Label()] = "ok"
			}
		}
		return out
	}
}

// waitingFor describes the tokens that are not ok, for STATUS=; "" when
// every token is in use.
func waitingFor(states map[string]string) string {
	var parts []string
	for label, st := range states {
		if st != "ok" {
			parts = append(parts, fmt.Sprintf("token %q: %s", label, st))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// sessionStats adds up the session counts of every token.
func sessionStats(toks []*hsm.Token) func() hsm.SessionStats {
	return func() hsm.SessionStats {
		var sum hsm.SessionStats
		for _, t := range toks {
			s := t.SessionStats()
			sum.Pool += s.Pool
			sum.InUse += s.InUse
			sum.Waiting += s.Waiting
			sum.Raw += s.Raw
			sum.RawMax += s.RawMax
		}
		return sum
	}
}

// anyTokenPings is the readiness check of the HSM: csrd can serve while at
// least one admitted token of the pool answers (Generate moves to the
// healthy ones; a withheld one takes no keys yet).
func anyTokenPings(pool *lifecycle.TokenPool, toks []*hsm.Token, members []lifecycle.Token) func(context.Context) error {
	return func(ctx context.Context) error {
		var errs []error
		for i, t := range toks {
			if !pool.Admitted(members[i]) {
				errs = append(errs, fmt.Errorf("token %q not admitted yet: %s", t.Label(), hsm.Reason(t.Healthy())))
				continue
			}
			err := t.Ping(ctx)
			if err == nil {
				return nil
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
}
