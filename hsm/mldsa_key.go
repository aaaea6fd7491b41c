package hsm

import (
	"bytes"
	"context"
	"crypto"
	"io"
	"sync"

	"github.com/miekg/pkcs11"
)

// MLDSAKey is an ML-DSA private key held either by the token
// (AltStorageToken) or in process, derived from a seed the token sealed
// (AltStorageSealed). It implements crypto.Signer: pure ML-DSA over the whole
// message (opts must not name a hash), empty context, hedged. Public returns
// circl's *mldsa44.PublicKey, *mldsa65.PublicKey or *mldsa87.PublicKey.
type MLDSAKey struct {
	tok    *Token
	set    MLDSA
	scheme mldsaScheme
	public crypto.PublicKey

	// AltStorageToken
	ref       KeyRef
	hmu       sync.Mutex // guards priv, pub and epoch
	priv, pub pkcs11.ObjectHandle
	epoch     uint64 // the Token connection the handles belong to

	// AltStorageSealed
	sealed []byte
	mu     sync.Mutex
	sign   func([]byte) ([]byte, error) // nil once wiped
	wipe   func()
}

// Set returns the parameter set.
func (k *MLDSAKey) Set() MLDSA { return k.set }

// Storage says where the private key lives.
func (k *MLDSAKey) Storage() AltStorage {
	if k.sealed != nil {
		return AltStorageSealed
	}
	return AltStorageToken
}

// Ref names the token objects (AltStorageToken only; zero otherwise).
func (k *MLDSAKey) Ref() KeyRef { return k.ref.clone() }

// SealedSeed returns the sealed seed to store (AltStorageSealed only). It is
// useless without this token's KEK and the same SealBinding.
func (k *MLDSAKey) SealedSeed() []byte { return bytes.Clone(k.sealed) }

// Public returns the public key.
func (k *MLDSAKey) Public() crypto.PublicKey { return k.public }

// Sign signs msg. rand is ignored: hedging randomness comes from the token
// (AltStorageToken) or crypto/rand inside circl.
func (k *MLDSAKey) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	const op = "sign"
	if err := k.tok.begin(context.Background(), op); err != nil {
		return nil, err
	}
	defer k.tok.end()
	if opts != nil && opts.HashFunc() != 0 {
		return nil, classErr(op, ErrUnsupported, "%v signs whole messages (pure ML-DSA), not %v digests", k.set, opts.HashFunc())
	}
	var (
		sig []byte
		err error
	)
	if k.sealed != nil {
		k.mu.Lock()
		if k.sign == nil {
			k.mu.Unlock()
			return nil, classErr(op, ErrNotFound, "%v key was wiped", k.set)
		}
		sig, err = k.sign(msg)
		k.mu.Unlock()
		if err != nil {
			return nil, classErr(op, nil, "%v: %v", k.set, err)
		}
	} else {
		priv, _, bErr := k.bound(op)
		if bErr != nil {
			return nil, bErr
		}
		err = k.tok.withWorkSession(context.Background(), op, func(sh pkcs11.SessionHandle) error {
			if err := k.tok.p11.SignInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmMLDSA, nil)}, priv); err != nil {
				return err
			}
			sig, err = k.tok.p11.Sign(sh, msg)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	if len(sig) != k.scheme.sigSize {
		return nil, classErr(op, nil, "%d-byte %v signature, want %d", len(sig), k.set, k.scheme.sigSize)
	}
	return sig, nil
}

// Wipe zeroes an in-process (sealed-storage) private key; later Sign calls
// fail. The sealed seed stays valid. A no-op for token keys, which never
// leave the token. Call it as soon as the key has signed what it must.
func (k *MLDSAKey) Wipe() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.wipe != nil {
		k.wipe()
		k.wipe, k.sign = nil, nil
	}
}

// Destroy destroys the token objects by handle (AltStorageToken) or wipes
// the in-process key (AltStorageSealed; deleting the stored seal is the
// caller's part, it is the only other copy).
func (k *MLDSAKey) Destroy(ctx context.Context) error {
	const op = "destroy key"
	if k.sealed != nil {
		k.Wipe()
		return nil
	}
	if err := k.tok.begin(ctx, op); err != nil {
		return err
	}
	defer k.tok.end()
	priv, pub, err := k.bound(op)
	if err != nil {
		return err
	}
	return k.tok.destroyHandles(ctx, op, priv, pub)
}

// bound returns the token handles on the current connection, finding the
// pair again by CKA_ID and CKA_LABEL after a reconnect. Call between begin
// and end.
func (k *MLDSAKey) bound(op string) (priv, pub pkcs11.ObjectHandle, err error) {
	k.hmu.Lock()
	defer k.hmu.Unlock()
	if k.epoch == k.tok.epoch {
		return k.priv, k.pub, nil
	}
	err = k.tok.withRawSession(context.Background(), op, func(sh pkcs11.SessionHandle) error {
		tmpl := append(refTemplate(k.ref), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkMLDSA))
		privs, err := k.tok.findObjects(sh, append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)))
		if err != nil {
			return err
		}
		pubs, err := k.tok.findObjects(sh, append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY)))
		if err != nil {
			return err
		}
		if len(privs) != 1 || len(pubs) != 1 {
			return classErr(op, ErrNotFound, "ML-DSA key pair %s not on the token after reconnecting", k.ref)
		}
		k.priv, k.pub, k.epoch = privs[0], pubs[0], k.tok.epoch
		return nil
	})
	return k.priv, k.pub, err
}

// GenerateMLDSA generates an ML-DSA key pair inside the token (PKCS#11 3.2
// CKM_ML_DSA_KEY_PAIR_GEN) named by ref, with the same protective
// attributes as every other csrd key. ErrUnsupported when the token has no
// ML-DSA (see MLDSAStorage); nothing is created then.
func (t *Token) GenerateMLDSA(ctx context.Context, set MLDSA, ref KeyRef) (*MLDSAKey, error) {
	const op = "generate key pair"
	if err := set.Validate(); err != nil {
		return nil, err
	}
	if err := ref.check(op); err != nil {
		return nil, err
	}
	if err := t.begin(ctx, op); err != nil {
		return nil, err
	}
	defer t.end()
	if err := t.requireMechanisms(op, set.String(), ckmMLDSAKeyPairGen, ckmMLDSA); err != nil {
		return nil, err
	}
	sc := mldsaSchemes[set]
	pubT, privT := mldsaTemplates(ref, sc.ckp)
	k := &MLDSAKey{tok: t, set: set, scheme: sc, ref: ref.clone()}
	err := t.withWorkSession(ctx, op, func(sh pkcs11.SessionHandle) error {
		pubH, privH, err := t.p11.GenerateKeyPair(sh,
			[]*pkcs11.Mechanism{pkcs11.NewMechanism(ckmMLDSAKeyPairGen, nil)}, pubT, privT)
		if err != nil {
			return err
		}
		pub, rErr := t.readMLDSAPublic(sh, pubH, sc)
		if rErr != nil {
			_ = t.p11.DestroyObject(sh, privH)
			_ = t.p11.DestroyObject(sh, pubH)
			return &Error{Op: op, Err: ErrKeyMismatch, cause: rErr}
		}
		k.priv, k.pub, k.public, k.epoch = privH, pubH, pub, t.epoch
		return nil
	})
	if err != nil {
		t.cleanupFailed(ctx, ref, err)
		return nil, err
	}
	t.log.Debug().Str("key", ref.String()).Stringer("set", set).Msg("hsm: ML-DSA key pair generated in the token")
	return k, nil
}

// readMLDSAPublic reads the public key (CKA_VALUE, the FIPS 204 encoding)
// and checks its parameter set.
func (t *Token) readMLDSAPublic(sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, sc mldsaScheme) (crypto.PublicKey, error) {
	got, err := t.p11.GetAttributeValue(sh, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(ckaParameterSet, nil),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil),
	})
	if err != nil {
		return nil, err
	}
	if p := ulong(got[0].Value); p != sc.ckp {
		return nil, classErr("read public key", nil, "CKA_PARAMETER_SET %d, want %d", p, sc.ckp)
	}
	return sc.parsePublic(got[1].Value)
}

// NewSealedMLDSA makes an ML-DSA key for a token without ML-DSA: a 32-byte
// seed from the token's RNG (C_GenerateRandom), the key pair derived from
// it with circl, the seed sealed by the token (AES-256-GCM under the KEK,
// bound to b with b.Algorithm set to the parameter set) and then wiped. The
// key stays usable in memory until Wipe or Destroy; SealedSeed is what to
// store.
func (t *Token) NewSealedMLDSA(ctx context.Context, set MLDSA, b SealBinding) (*MLDSAKey, error) {
	const op = "generate sealed key"
	if err := set.Validate(); err != nil {
		return nil, err
	}
	if err := t.begin(ctx, op); err != nil {
		return nil, err
	}
	defer t.end()
	var seed []byte
	err := t.withWorkSession(ctx, op, func(sh pkcs11.SessionHandle) error {
		var err error
		seed, err = t.p11.GenerateRandom(sh, mldsaSeedSize)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer clear(seed)
	if len(seed) != mldsaSeedSize {
		return nil, classErr(op, nil, "token RNG returned %d bytes", len(seed))
	}
	b.Algorithm = set.String()
	blob, err := t.seal(ctx, seed, b)
	if err != nil {
		return nil, err
	}
	return newSealedKey(t, set, seed, blob), nil
}

// OpenSealedMLDSA re-derives the key from a seed sealed by NewSealedMLDSA
// with the same binding. A blob that does not open is ErrSealed.
func (t *Token) OpenSealedMLDSA(ctx context.Context, set MLDSA, blob []byte, b SealBinding) (*MLDSAKey, error) {
	if err := set.Validate(); err != nil {
		return nil, err
	}
	if err := t.begin(ctx, "unseal"); err != nil {
		return nil, err
	}
	defer t.end()
	b.Algorithm = set.String()
	seed, err := t.unseal(ctx, blob, b)
	if err != nil {
		return nil, err
	}
	defer clear(seed)
	if len(seed) != mldsaSeedSize {
		return nil, classErr("unseal", ErrSealed, "sealed secret is %d bytes, not an ML-DSA seed", len(seed))
	}
	return newSealedKey(t, set, seed, bytes.Clone(blob)), nil
}

// newSealedKey derives the key pair from seed (which the caller wipes).
func newSealedKey(t *Token, set MLDSA, seed, blob []byte) *MLDSAKey {
	sc := mldsaSchemes[set]
	var xi [mldsaSeedSize]byte
	copy(xi[:], seed)
	pub, sign, wipe := sc.fromSeed(&xi)
	clear(xi[:])
	return &MLDSAKey{tok: t, set: set, scheme: sc, public: pub, sealed: blob, sign: sign, wipe: wipe}
}
