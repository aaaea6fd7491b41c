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
	var toks []*hsm.Token
	closeAll := func() {
		for _, t := range toks {
			_ = t.Close()
		}
	}
	for _, tc := range cfg.HSM.TokenList() {
		pin, err := cfg.ReadTokenPIN(tc)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		t, err := hsm.Open(ctx, hsm.Config{
			Module: cfg.HSM.Module, TokenLabel: tc.TokenLabel, PIN: pin,
			MaxSessions: 2, PoolWaitTimeout: cfg.HSM.SessionWaitTimeout,
		}, log)
		pin = ""
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		toks = append(toks, t)
	}
	members := make([]lifecycle.Token, len(toks))
	for i, t := range toks {
		members[i] = t
	}
	pool, err := lifecycle.NewTokenPool(log, members...)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return pool, closeAll, nil
}
