package hsm

import (
	"context"

	"github.com/rs/zerolog"
)

// Credential names one token of a pool and where its user PIN comes from.
type Credential struct {
	TokenLabel string
	// PIN reads the token's user PIN. It is called for the first login and
	// again when the token refuses the PIN on a re-login, so rotating the
	// PIN (token and file) needs no restart.
	PIN func() (string, error)
	// RequireSignOnly is Config.RequireSignOnly for this token.
	RequireSignOnly bool
	// KeysPerLogin is Config.KeysPerLogin for this token.
	KeysPerLogin int
}

// OpenAll opens every token in creds with base's module and limits (its
// TokenLabel, PIN and RefreshPIN are replaced per token) and returns them in
// order with a function that closes them all. If one fails, those already
// open are closed: a half-open pool is never returned. Each PIN is dropped
// as soon as its token is open.
func OpenAll(ctx context.Context, base Config, creds []Credential, log zerolog.Logger) ([]*Token, func(), error) {
	var toks []*Token
	closeAll := func() {
		for _, t := range toks {
			_ = t.Close()
		}
	}
	for _, c := range creds {
		pin, err := c.PIN()
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		cfg := base
		cfg.TokenLabel, cfg.PIN, cfg.RefreshPIN, cfg.RequireSignOnly, cfg.KeysPerLogin = c.TokenLabel, pin, c.PIN, c.RequireSignOnly, c.KeysPerLogin
		t, err := Open(ctx, cfg, log)
		pin, cfg.PIN = "", "" //nolint:ineffassign // drops this function's last references to the PIN as soon as the token is open
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		toks = append(toks, t)
	}
	return toks, closeAll, nil
}

// StartAll is OpenAll for a daemon (see Start): every token is returned,
// connected or still waiting for its module, token or PIN; only a
// configuration error (or a second Token on one token) fails. Each Token
// reads its PIN through its Credential, at the first attempt and whenever it
// needs one again.
func StartAll(ctx context.Context, base Config, creds []Credential, log zerolog.Logger) ([]*Token, func(), error) {
	var toks []*Token
	closeAll := func() {
		for _, t := range toks {
			_ = t.Close()
		}
	}
	for _, c := range creds {
		cfg := base
		cfg.TokenLabel, cfg.PIN, cfg.RefreshPIN, cfg.RequireSignOnly, cfg.KeysPerLogin = c.TokenLabel, "", c.PIN, c.RequireSignOnly, c.KeysPerLogin
		t, err := Start(ctx, cfg, log)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		toks = append(toks, t)
	}
	return toks, closeAll, nil
}
