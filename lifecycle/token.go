package lifecycle

import (
	"context"
	"crypto"
	"crypto/x509"
	"time"

	"github.com/csrd/csrd/hsm"
)

// Token is what lifecycle needs from one HSM token. HSMToken adapts
// *hsm.Token to it; lifecycle's tests also use a fake that fails on demand.
type Token interface {
	// Label and Serial name the token in records; Serial is "" until the
	// token has connected once.
	Label() string
	Serial() string
	// Healthy is nil while the token is connected, else an error saying
	// why not (hsm.Reason phrases it). It does not touch the token.
	Healthy() error
	// Connected is closed once the token has connected for the first time.
	Connected() <-chan struct{}
	// Ping asks the token whether it answers (readiness).
	Ping(ctx context.Context) error
	// Profile is what the token's answers and trial rounds showed at its
	// first connection (nil before it); admission records it.
	Profile() *hsm.Profile

	NewKeyID(ctx context.Context) ([]byte, error)
	CanGenerate(spec hsm.KeySpec) error
	// Usage is what a key of spec gets on the token, as its profile's
	// trial read it back; a key csrd records has at least signing.
	Usage(spec hsm.KeySpec) hsm.Usage
	// GenerateKeyPair creates a key pair named ref. The key signs inside
	// the token; lifecycle only signs the CSR with it, and destroys it by
	// the record's reference (DestroyKey), which also works after a crash.
	GenerateKeyPair(ctx context.Context, spec hsm.KeySpec, ref hsm.KeyRef) (crypto.Signer, error)
	DestroyKey(ctx context.Context, ref hsm.KeyRef) error
	PutCertificate(ctx context.Context, ref hsm.KeyRef, cert *x509.Certificate) (bool, error)
	ListObjects(ctx context.Context, labelPrefix string) ([]hsm.Object, error)
	ObjectsOf(ctx context.Context, ref hsm.KeyRef) ([]hsm.ObjectClass, error)

	// ML-DSA alternative keys: in the token when it has PKCS#11 3.2 ML-DSA,
	// else a seed sealed by the token.
	MLDSAStorage() hsm.AltStorage
	GenerateMLDSA(ctx context.Context, set hsm.MLDSA, ref hsm.KeyRef) (AltKey, error)
	NewSealedMLDSA(ctx context.Context, set hsm.MLDSA, b hsm.SealBinding) (AltKey, error)
}

// AltKey is a hybrid request's ML-DSA key: it makes the CSR's alternative
// signature. A sealed one carries the sealed seed the record keeps and
// holds its private half in memory until Wipe, which Generate calls as
// soon as the CSR is signed (a no-op for a key in the token).
type AltKey interface {
	crypto.Signer
	Storage() hsm.AltStorage
	SealedSeed() []byte
	Wipe()
}

// HSMToken is an *hsm.Token as a Token: hsm's key constructors return its
// concrete key types, these return them as the interfaces lifecycle uses.
// Every other method is the token's own.
type HSMToken struct{ *hsm.Token }

// GenerateKeyPair is hsm.Token.GenerateKeyPair.
func (t HSMToken) GenerateKeyPair(ctx context.Context, spec hsm.KeySpec, ref hsm.KeyRef) (crypto.Signer, error) {
	k, err := t.Token.GenerateKeyPair(ctx, spec, ref)
	if err != nil {
		return nil, err // an untyped nil: a nil *hsm.Key would make a non-nil Signer
	}
	return k, nil
}

// GenerateMLDSA is hsm.Token.GenerateMLDSA.
func (t HSMToken) GenerateMLDSA(ctx context.Context, set hsm.MLDSA, ref hsm.KeyRef) (AltKey, error) {
	return altKey(t.Token.GenerateMLDSA(ctx, set, ref))
}

// NewSealedMLDSA is hsm.Token.NewSealedMLDSA.
func (t HSMToken) NewSealedMLDSA(ctx context.Context, set hsm.MLDSA, b hsm.SealBinding) (AltKey, error) {
	return altKey(t.Token.NewSealedMLDSA(ctx, set, b))
}

func altKey(k *hsm.MLDSAKey, err error) (AltKey, error) {
	if err != nil {
		return nil, err
	}
	return k, nil
}

// KeygenObserver is told how long each key generation in a token took
// (metrics.Metrics records it).
type KeygenObserver interface {
	ObserveKeyGeneration(keyType string, d time.Duration, err error)
}

// Timed returns tok with every key generation timed into o, by key type:
// the primary key's spec ("RSA-2048", "ECDSA-P-256", ...), an alternative
// key made in the token by its set ("ML-DSA-65"), one made in software and
// sealed by the token with "-sealed" added ("ML-DSA-65-sealed").
func Timed(tok Token, o KeygenObserver) Token { return timedToken{Token: tok, o: o} }

type timedToken struct {
	Token
	o KeygenObserver
}

func (t timedToken) GenerateKeyPair(ctx context.Context, spec hsm.KeySpec, ref hsm.KeyRef) (crypto.Signer, error) {
	start := time.Now()
	k, err := t.Token.GenerateKeyPair(ctx, spec, ref)
	t.o.ObserveKeyGeneration(spec.String(), time.Since(start), err)
	return k, err
}

func (t timedToken) GenerateMLDSA(ctx context.Context, set hsm.MLDSA, ref hsm.KeyRef) (AltKey, error) {
	start := time.Now()
	k, err := t.Token.GenerateMLDSA(ctx, set, ref)
	t.o.ObserveKeyGeneration(set.String(), time.Since(start), err)
	return k, err
}

func (t timedToken) NewSealedMLDSA(ctx context.Context, set hsm.MLDSA, b hsm.SealBinding) (AltKey, error) {
	start := time.Now()
	k, err := t.Token.NewSealedMLDSA(ctx, set, b)
	t.o.ObserveKeyGeneration(set.String()+"-sealed", time.Since(start), err)
	return k, err
}
