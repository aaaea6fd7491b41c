package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

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
	toks, closeAll, err := hsm.OpenAll(ctx, hsm.Config{
		Module: cfg.HSM.Module, MaxSessions: 2, PoolWaitTimeout: cfg.HSM.SessionWaitTimeout,
	}, credentials(cfg), log)
	if err != nil {
		return nil, nil, withSoftHSMHint(err, cfg)
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

// credentials names each configured token with its PIN file and whether
// it must make sign-only keys.
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

// withSoftHSMHint adds to "token not found" from SoftHSM where SoftHSM
// looked: it finds its tokens through the file SOFTHSM2_CONF names, which
// csrd gets from `make run` or its unit but csrctl inherits from the shell.
// When a softhsm2.conf lies beside the PIN file (init-token.sh's layout, as
// `make dev-token` makes it) the hint names it.
func withSoftHSMHint(err error, cfg *config.Config) error {
	if !errors.Is(err, hsm.ErrTokenNotFound) || !strings.Contains(strings.ToLower(filepath.Base(cfg.HSM.Module)), "softhsm") {
		return err
	}
	conf, set := os.LookupEnv("SOFTHSM2_CONF")
	where := "SOFTHSM2_CONF is not set, so SoftHSM looked in its system configuration"
	if set {
		where = "SoftHSM looked in SOFTHSM2_CONF=" + conf
	}
	hint := "Set SOFTHSM2_CONF to the softhsm2.conf that holds the token."
	if dev := besidePINFile(cfg.HSM.PINFile); dev != "" && dev != conf {
		hint = "The softhsm2.conf beside the PIN file may hold it: SOFTHSM2_CONF=" + dev + " csrctl ..."
	}
	return fmt.Errorf("%w\n  %s.\n  %s", err, where, hint)
}

// besidePINFile returns the absolute path of a softhsm2.conf in the PIN
// file's directory, or "" if there is none.
func besidePINFile(pinFile string) string {
	if pinFile == "" {
		return ""
	}
	p, err := filepath.Abs(filepath.Join(filepath.Dir(pinFile), "softhsm2.conf"))
	if err != nil {
		return ""
	}
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}
