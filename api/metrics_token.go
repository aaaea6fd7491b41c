package api

import (
	"context"
	"time"

	"github.com/csrd/csrd/hsm"
)

// TimedToken is the token with key generation timed into the metrics. It
// embeds *hsm.Token, so it offers every token method the use cases need;
// GenerateKeyPair, GenerateMLDSA and NewSealedMLDSA are measured. Wire it where lifecycle gets its token.
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

// GenerateMLDSA times a hybrid request's alternative key ("ML-DSA-65"),
// made in the token or sealed by it.
func (t *TimedToken) GenerateMLDSA(ctx context.Context, set hsm.MLDSA, ref hsm.KeyRef) (*hsm.MLDSAKey, error) {
	start := time.Now()
	k, err := t.Token.GenerateMLDSA(ctx, set, ref)
	t.m.ObserveKeyGeneration(set.String(), time.Since(start), err)
	return k, err
}

// NewSealedMLDSA times the alternative key of a token without ML-DSA: made
// in software and its seed sealed by the token ("ML-DSA-65-sealed").
func (t *TimedToken) NewSealedMLDSA(ctx context.Context, set hsm.MLDSA, b hsm.SealBinding) (*hsm.MLDSAKey, error) {
	start := time.Now()
	k, err := t.Token.NewSealedMLDSA(ctx, set, b)
	t.m.ObserveKeyGeneration(set.String()+"-sealed", time.Since(start), err)
	return k, err
}
