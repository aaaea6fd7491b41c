package enroll

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"errors"
	"sync"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/store"
)

// AccountLabel is the CKA_LABEL of CA ca's ACME account key. It is never of
// the form csrd-<digits>, which reconciliation reads as a record's key.
func AccountLabel(ca string) string { return hsm.ACMEAccountLabelPrefix + ca }

// accountKeySpec: ECDSA P-256, the key type every ACME CA accepts (ES256).
var accountKeySpec = hsm.KeySpec{Type: hsm.KeyECDSA, Bits: 256, Curve: elliptic.P256()}

// tokenAccount is a CA's ACME account whose key lives in this node's
// account token: generated there on first use (non-extractable,
// sign-only, as every csrd key) after a row naming it is committed, so no
// account key exists without a record of it. Each token has an account of
// its own with the CA (nodes with a token each register one each; nodes
// sharing a token share it), so a node never needs a key on a token it
// does not reach to speak to the CA.
type tokenAccount struct {
	s  *Service
	ca string
	mu sync.Mutex
}

// of names this node's account with the CA.
func (a *tokenAccount) of() store.AccountOf {
	return store.AccountOf{CA: a.ca, TokenLabel: a.s.tok.Label(), TokenSerial: a.s.tok.Serial()}
}

// Key finds the account key in the token, or makes it.
func (a *tokenAccount) Key(ctx context.Context) (crypto.Signer, string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	row, err := a.row(ctx)
	if err != nil {
		return nil, "", err
	}
	tok := a.s.tok
	ref := hsm.KeyRef{ID: row.KeyID, Label: row.KeyLabel}
	found, err := tok.FindKey(ctx, ref)
	if err == nil {
		return found, row.URL, nil
	}
	if !errors.Is(err, hsm.ErrNotFound) {
		return nil, "", err
	}
	key, err := tok.GenerateKeyPair(ctx, accountKeySpec, ref)
	if err != nil {
		return nil, "", err
	}
	a.logMade(row)
	return key, "", nil
}

// logMade says that the account key was made, and with which usage when
// the token could not restrict it to signing (hsm.require_sign_only false;
// csrd still only signs with it).
func (a *tokenAccount) logMade(row *store.Account) {
	tok := a.s.tok
	ev := a.s.log.Info()
	msg := "ACME account key generated in the token"
	if row.URL != "" {
		// The key the CA knows is gone: the new one registers afresh.
		ev, msg = a.s.log.Warn(), "ACME account key missing from the token; a new one was generated and will be registered"
	}
	if u := tok.Usage(accountKeySpec); u.Sign && !u.SignOnly() {
		ev = a.s.log.Warn().Str("key_usage", u.String())
		msg += "; the token could not restrict it to signing (csrd only signs with it)"
	}
	ev.Str("ca", a.ca).Str("label", row.KeyLabel).Str("token", tok.Label()).Msg(msg)
}

// row returns this token's account row with the CA, committing a new one
// (with the key's label and CKA_ID) before any key exists.
func (a *tokenAccount) row(ctx context.Context) (*store.Account, error) {
	of := a.of()
	row, err := a.s.records.GetAccount(ctx, of)
	if !errors.Is(err, store.ErrNotFound) {
		return row, err
	}
	id, err := a.s.tok.NewKeyID(ctx)
	if err != nil {
		return nil, err
	}
	return a.s.records.BeginAccount(ctx, &store.Account{CA: of.CA, TokenLabel: of.TokenLabel, TokenSerial: of.TokenSerial,
		KeyLabel: AccountLabel(a.ca), KeyID: id})
}

// SaveURL records the registered account's URL.
func (a *tokenAccount) SaveURL(ctx context.Context, url string) error {
	return a.s.records.SetAccountURL(ctx, a.of(), url)
}
