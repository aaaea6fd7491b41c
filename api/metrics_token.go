package api

import (
	"context"
	"time"

	"github.com/csrd/csrd/hsm"
)

// TimedToken is the token with key generation timed into the metrics. It
// embeds *hsm.Token, so it offers every token method the use cases need;
// only GenerateKeyPair is measured. Wire it where lifecycle gets its token.
type TimedToken struct {
	*hsm.Token
	m *Metrics
}

// TimeToken wraps t.
func (m *Metrics) TimeToken(t *hsm.Token) *TimedToken { return &TimedToken{Token: t, m: m} }

// GenerateKeyPair generates in the token and observes how long it took,
// labelled with the key type ("RSA-2048", "ECDSA-P-256", ...).
func (t *TimedToken) GenerateKeyPair(ctx context.Context, spec hsm.KeySpec, ref hsm.KeyRef) (*hsm.Key, error) {
	start := time.Now()
	k, err := t.Token.GenerateKeyPair(ctx, spec, ref)
	t.m.ObserveKeyGeneration(spec.String(), time.Since(start), err)
	return k, err
}
