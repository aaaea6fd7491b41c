package main

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/metrics"
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
			TokenLabel:      tc.TokenLabel,
			PIN:             func() (string, error) { return cfg.ReadTokenPIN(tc) },
			RequireSignOnly: cfg.HSM.SignOnly(tc),
			KeysPerLogin:    cfg.HSM.LoginKeys(tc),
		})
	}
	return creds
}

// tokenPool is the pool lifecycle places keys in, each token timed for
// the metrics. Every member starts withheld: lifecycle admits each once its
// records are reconciled (AdmitConnected, AdmitLate).
func tokenPool(log zerolog.Logger, m *metrics.Metrics, toks []*hsm.Token) (*lifecycle.TokenPool, error) {
	members := make([]lifecycle.Token, len(toks))
	for i, t := range toks {
		members[i] = lifecycle.Timed(lifecycle.HSMToken{Token: t}, m)
	}
	pool, err := lifecycle.NewTokenPool(log, members...)
	if err != nil {
		return nil, err
	}
	for _, mb := range members {
		pool.Withhold(mb)
	}
	return pool, nil
}
