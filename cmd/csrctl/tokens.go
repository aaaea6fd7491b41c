package main

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
)

// openPool logs in to every configured token (hsm.token_label, or each of
// hsm.tokens, as csrd does) with few sessions: csrctl does one thing at a
// time, next to a running csrd. It returns the pool and a function that
// closes every token.
func openPool(ctx context.Context, cfg *config.Config, log zerolog.Logger) (*lifecycle.TokenPool, func(), error) {
	var creds []hsm.Credential
	for _, tc := range cfg.HSM.TokenList() {
		creds = append(creds, hsm.Credential{
			TokenLabel: tc.TokenLabel,
			PIN:        func() (string, error) { return cfg.ReadTokenPIN(tc) },
		})
	}
	toks, closeAll, err := hsm.OpenAll(ctx, hsm.Config{
		Module: cfg.HSM.Module, MaxSessions: 2, PoolWaitTimeout: cfg.HSM.SessionWaitTimeout,
	}, creds, log)
	if err != nil {
		return nil, nil, err
	}
	members := make([]lifecycle.Token, len(toks))
	for i, t := range toks {
		members[i] = lifecycle.HSMToken{Token: t}
	}
	pool, err := lifecycle.NewTokenPool(log, members...)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return pool, closeAll, nil
}
