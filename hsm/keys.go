package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// KeyType is the algorithm family of a key pair.
type KeyType int

// Key types. The zero value is invalid so a forgotten field is caught.
const (
	KeyRSA KeyType = iota + 1
	KeyECDSA
	KeyEd25519 // PKCS#11 3.0 CKK_EC_EDWARDS on edwards25519, pure EdDSA
	KeyEd448   // PKCS#11 3.0 CKK_EC_EDWARDS on edwards448, pure EdDSA
)

func (k KeyType) String() string {
	switch k {
	case KeyRSA:
		return "RSA"
	case KeyECDSA:
		return "ECDSA"
	case KeyEd25519:
		return "Ed25519"
	case KeyEd448:
		return "Ed448"
	}
	return fmt.Sprintf("KeyType(%d)", int(k))
}

// rsaExponent is the only public exponent csrd generates (F4).
const rsaExponent = 65537

// KeySpec says which key pair to generate: Bits for RSA, Curve for ECDSA;
// the EdDSA types need neither (Bits, if set, must be 255 or 448).
type KeySpec struct {
	Type  KeyType
	Bits  int
	Curve elliptic.Curve
}

// Validate returns an error wrapping ErrUnsupported unless s is a key pair hsm
// generates: RSA 2048/3072/4096/8192, ECDSA P-256/P-384/P-521, Ed25519 or
// Ed448.
func (s KeySpec) Validate() error {
	switch s.Type {
	case KeyEd25519, KeyEd448:
		if want := edParamsFor(s.Type).bits; s.Bits != 0 && s.Bits != want {
			return classErr("key spec", ErrUnsupported, "%v with %d bits (it has %d)", s.Type, s.Bits, want)
		}
		if s.Curve != nil {
			return classErr("key spec", ErrUnsupported, "%v takes no Weierstrass curve", s.Type)
		}
		return nil
	case KeyRSA:
		switch s.Bits {
		case 2048, 3072, 4096, 8192:
			return nil
		}
		return classErr("key spec", ErrUnsupported, "RSA key size %d", s.Bits)
	case KeyECDSA:
		if s.Curve == nil {
			return classErr("key spec", ErrUnsupported, "ECDSA without a curve")
		}
		switch s.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return classErr("key spec", ErrUnsupported, "ECDSA curve %s", s.Curve.Params().Name)
	}
	return classErr("key spec", ErrUnsupported, "key type %v", s.Type)
}

func (s KeySpec) String() string {
	switch {
	case s.Type == KeyRSA:
		return fmt.Sprintf("RSA-%d", s.Bits)
	case s.Type == KeyECDSA && s.Curve != nil:
		return "ECDSA-" + s.Curve.Params().Name
	}
	// Ed25519 and Ed448 name themselves.
	return s.Type.String()
}

// KeyRef names a key pair on the token: both halves (and any certificate) carry
// CKA_ID = ID and CKA_LABEL = Label.
type KeyRef struct {
	ID    []byte
	Label string
}

func (r KeyRef) String() string { return r.Label + "/" + hex.EncodeToString(r.ID) }

// check rejects empty references: an empty CKA_ID or CKA_LABEL in a search
// template would match every object on the token.
func (r KeyRef) check(op string) error {
	if len(r.ID) == 0 || r.Label == "" {
		return fmt.Errorf("hsm: %s: key reference needs both ID and label (got %q)", op, r.String())
	}
	return nil
}

func (r KeyRef) clone() KeyRef { return KeyRef{ID: bytes.Clone(r.ID), Label: r.Label} }

// Key is a private key that stays on the token. It implements crypto.Signer:
// RSA keys sign PKCS#1 v1.5 (or PSS with *rsa.PSSOptions and an explicit salt
// length) over the digest given, ECDSA keys return an ASN.1 DER signature,
// Ed25519 and Ed448 keys sign the whole message (pure EdDSA, crypto.Hash(0),
// no context) and Public returns ed25519.PublicKey or circl's
// ed448.PublicKey. Sign has no context: it waits at most PoolWaitTimeout for a
// session, then the PKCS#11 call runs to completion.
type Key struct {
	tok *Token
	ref KeyRef
	pub crypto.PublicKey

	mu     sync.Mutex      // guards signer, ed, rk and epoch (see bound in recover.go)
	signer crypto11.Signer // RSA, ECDSA: holds the private and public object handles
	ed     *edKey          // Ed25519, Ed448: crypto11 has no EdDSA, so raw handles
	rk     *rawKey         // RSA, ECDSA the profile makes on the raw handle (rawkey.go)
	epoch  uint64          // the Token connection the handles belong to
	usage  Usage           // what the private key may do (GenerateKeyPair)
}

// newKey wraps a crypto11 signer made on t's current connection.
func (t *Token) newKey(ref KeyRef, s crypto11.Signer) *Key {
	return &Key{tok: t, ref: ref.clone(), pub: s.Public(), signer: s, epoch: t.epoch}
}

// newEdKey wraps Edwards key handles made on t's current connection.
func (t *Token) newEdKey(ref KeyRef, ed *edKey) *Key {
	return &Key{tok: t, ref: ref.clone(), pub: ed.public, ed: ed, epoch: t.epoch}
}

// Ref returns the key's reference.
func (k *Key) Ref() KeyRef { return k.ref.clone() }

// Public returns the public key read from the token when the Key was made.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Sign signs digest (the message itself for EdDSA) with the private key on
// the token.
// On a token that keeps keys loaded (loads.go), a CKR_GENERAL_ERROR is
// tried once more after logging in afresh.
func (k *Key) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := k.sign(rand, digest, opts)
	if k.tok.spentAfter(err) {
		sig, err = k.sign(rand, digest, opts)
	}
	return sig, err
}

func (k *Key) sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	const op = "sign"
	if err := k.tok.beginLoading(context.Background(), op, k.ref.ID); err != nil {
		return nil, err
	}
	defer k.tok.end()
	if k.isEd() {
		ed, err := k.boundEd(op)
		if err != nil {
			return nil, err
		}
		return k.tok.edSign(ed, digest, opts)
	}
	if opts == nil {
		return nil, fmt.Errorf("hsm: %s: nil SignerOpts", op)
	}
	if k.rk != nil {
		rk, err := k.boundRaw(op)
		if err != nil {
			return nil, err
		}
		sig, err := k.tok.rawSign(rk, digest, opts)
		if err != nil {
			return nil, k.tok.judgeSign(rk.typ, err)
		}
		k.tok.proved(signProof(rk.typ))
		return sig, nil
	}
	// crypto11 would sign a digest of the wrong length without complaint.
	if h := opts.HashFunc(); h != 0 && len(digest) != h.Size() {
		return nil, fmt.Errorf("hsm: %s: digest is %d bytes, %v needs %d", op, len(digest), h, h.Size())
	}
	s, err := k.bound(op)
	if err != nil {
		return nil, err
	}
	defer k.tok.sessions.enter()()
	sig, err := s.Sign(rand, digest, opts)
	if err != nil {
		return nil, k.tok.judgeSign(keyTypeOf(k.pub), k.tok.wrap(op, err))
	}
	return sig, nil
}

// Usage returns what the private key may do, as its token's profile (and,
// for keys made on the raw handle, the key itself) says.
func (k *Key) Usage() Usage { return k.usage }

// Usage returns what keys of spec's type get on this token, by its
// profile (zero before the first connection). GenerateKeyPair makes no key
// that may do more: raw-handle keys are read back, crypto11's share the
// trial key's template.
func (t *Token) Usage(spec KeySpec) Usage { return t.Profile().Key(spec.Type).Usage }

// Destroy destroys the private and public key objects by handle (no search).
func (k *Key) Destroy(ctx context.Context) error {
	const op = "destroy key"
	if err := k.tok.begin(ctx, op); err != nil {
		return err
	}
	defer k.tok.end()
	if k.isEd() {
		ed, err := k.boundEd(op)
		if err != nil {
			return err
		}
		if err := k.tok.destroyHandles(ctx, op, ed.priv, ed.pub); err != nil {
			return err
		}
		k.tok.log.Debug().Str("key", k.ref.String()).Msg("hsm: key destroyed")
		return nil
	}
	if k.rk != nil {
		rk, err := k.boundRaw(op)
		if err != nil {
			return err
		}
		if err := k.tok.destroyHandles(ctx, op, rk.priv, rk.pub); err != nil {
			return err
		}
		k.tok.log.Debug().Str("key", k.ref.String()).Msg("hsm: key destroyed")
		return nil
	}
	s, err := k.bound(op)
	if err != nil {
		return err
	}
	if err := s.Delete(); err != nil {
		return k.tok.wrap(op, err)
	}
	k.tok.log.Debug().Str("key", k.ref.String()).Msg("hsm: key destroyed")
	return nil
}

// NewKeyID returns 16 random bytes from the token's RNG (C_GenerateRandom)
// for use as a CKA_ID. The token's RNG is the one the key itself comes from,
// and a certified HSM's RNG is the one its ceremony documents name; the cost
// is one call on a raw session csrd keeps open. It refuses when the Token is
// closed or down, so no record is begun for a key that cannot be made.
func (t *Token) NewKeyID(ctx context.Context) ([]byte, error) {
	const op = "new key id"
	if err := t.begin(ctx, op); err != nil {
		return nil, err
	}
	defer t.end()
	var id []byte
	err := t.withWorkSession(ctx, op, func(sh pkcs11.SessionHandle) error {
		var err error
		id, err = t.p11.GenerateRandom(sh, keyIDSize)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(id) != keyIDSize {
		return nil, classErr(op, nil, "token RNG returned %d bytes", len(id))
	}
	return id, nil
}

// keyIDSize is the length of every CKA_ID csrd gives a key.
const keyIDSize = 16

// GenerateKeyPair generates a key pair as token objects named by ref.
//
// The private key is CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE
// and may only sign, and neither half can be changed or copied afterwards
// (see keyTemplates). The public key the token returns is checked against
// spec; on a mismatch the pair is destroyed and ErrKeyMismatch returned. No
// C_FindObjects on success.
//
// ctx is checked before starting; generation itself (seconds for RSA 4096,
// minutes for 8192 on SoftHSM) cannot be cancelled.
func (t *Token) GenerateKeyPair(ctx context.Context, spec KeySpec, ref KeyRef) (*Key, error) {
	const op = "generate key pair"
	if err := t.CanGenerate(spec); err != nil {
		return nil, err
	}
	if err := ref.check(op); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		k, err := t.generateAttempt(ctx, op, spec, ref)
		if err == nil {
			t.proved(generateProof(spec))
			return k, nil
		}
		if attempt == generateAttempts || !spurious(err) || ctx.Err() != nil || t.Healthy() != nil {
			return nil, t.judge(ctx, err, generateProof(spec))
		}
		// generateOnce already destroyed whatever the failed call left.
		t.log.Warn().Err(err).Int("attempt", attempt).Str("key", ref.String()).
			Msg("hsm: key generation failed with a code tokens return spuriously under concurrency; retrying")
	}
}

// generateAttempts bounds GenerateKeyPair's retries of spurious failures.
const generateAttempts = 3

// generateAttempt is one attempt of GenerateKeyPair, counted among the
// keys the token loads (loads.go). A CKR_GENERAL_ERROR on a token that
// keeps keys loaded may be the device out of room for them (keys loaded
// by something csrd does not count): the next attempt logs in afresh
// first.
func (t *Token) generateAttempt(ctx context.Context, op string, spec KeySpec, ref KeyRef) (*Key, error) {
	if err := t.beginLoading(ctx, op, ref.ID); err != nil {
		return nil, err
	}
	defer t.end()
	k, err := t.generateOnce(ctx, spec, ref)
	t.spentAfter(err)
	return k, err
}

// spurious reports the return codes SoftHSM 2.6 answers a valid
// C_GenerateKeyPair or C_CreateObject with when another session changes the
// token at the same moment (its object store races: SoftHSMv2 issues #573,
// #688; fixed upstream in 2.7.0 by #576 and #578). A real HSM may return CKR_GENERAL_ERROR or CKR_FUNCTION_FAILED
// transiently too. The key spec was validated and the mechanism listed, so
// a template the token truly rejects fails the same way every time and
// surfaces after the last attempt.
func spurious(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	if errors.Is(err, errPublicReadBack) {
		return true
	}
	switch e.CKR {
	case pkcs11.CKR_GENERAL_ERROR, pkcs11.CKR_FUNCTION_FAILED, pkcs11.CKR_TEMPLATE_INCONSISTENT:
		return true
	}
	return false
}

// errPublicReadBack marks a generation whose C_GenerateKeyPair succeeded
// but whose public key, read back at once, did not decode (crypto11:
// "unsupported elliptic curve" for a curve csrd validated and the token
// lists). SoftHSM 2.6 does this under concurrent destroys — one in some
// thousand generations of a 64-client churn load — as another face of the
// object-store race behind the spurious codes: a reader can catch an
// object between discarding its attributes and reloading them.
var errPublicReadBack = errors.New("the new key pair's public key read back unreadable")

// generateErr classifies a failed crypto11 generation: without a CKR_* code
// and without a session-pool cause (e.Err nil after wrap), crypto11 failed
// decoding what the token returned for a spec csrd had validated — the
// read-back above, retried like a spurious code.
func generateErr(err error) error {
	var e *Error
	if errors.As(err, &e) && e.CKR == 0 && e.Err == nil {
		return &Error{Op: e.Op, Err: errPublicReadBack, cause: e.cause}
	}
	return err
}

// generateOnce is one generation attempt of GenerateKeyPair, between its
// begin and end; a failure leaves no object under ref behind.
func (t *Token) generateOnce(ctx context.Context, spec KeySpec, ref KeyRef) (*Key, error) {
	kp := t.Profile().Key(spec.Type)
	var (
		k   *Key
		err error
	)
	switch {
	case spec.Type == KeyEd25519 || spec.Type == KeyEd448:
		k, err = t.generateEdDSA(ctx, spec, ref)
	case t.rawPath(spec.Type):
		k, err = t.generateRaw(ctx, spec, ref, kp.Template, kp.Signing)
	default:
		k, err = t.generateC11(ctx, spec, ref)
	}
	if err != nil {
		return nil, err
	}
	if err := t.checkUsage(ctx, k, kp.Usage); err != nil {
		return nil, err
	}
	t.log.Debug().Str("key", ref.String()).Stringer("spec", spec).Msg("hsm: key pair generated")
	return k, nil
}

// rawPath reports whether the profile makes RSA or ECDSA keys of type typ
// on the raw handle: a template shape crypto11 would complete otherwise,
// or signing that crypto11 cannot do.
func (t *Token) rawPath(typ KeyType) bool {
	kp := t.Profile().Key(typ)
	return (typ == KeyRSA || typ == KeyECDSA) && (rawShape(kp.Template) || kp.Signing == SignHashInToken)
}

// rawShape reports whether keys of shape must be generated on the raw
// handle: crypto11 would complete a template that leaves the public key's
// usage out.
func rawShape(shape Template) bool { return !shape.PublicUsage() }

// generateC11 generates spec's pair with crypto11 and a template shape
// that states the public key's usage (the profile's, full without one).
func (t *Token) generateC11(ctx context.Context, spec KeySpec, ref KeyRef) (*Key, error) {
	const op = "generate key pair"

	defer t.sessions.enter()()
	pub, priv, err := specAttributes(spec, ref, t.Profile().Key(spec.Type).Template)
	if err != nil {
		return nil, err
	}
	var signer crypto11.Signer
	switch spec.Type {
	case KeyRSA:
		signer, err = t.c11.GenerateRSAKeyPairWithAttributes(pub, priv, spec.Bits)
	case KeyECDSA:
		signer, err = t.c11.GenerateECDSAKeyPairWithAttributes(pub, priv, spec.Curve)
	}
	if err != nil {
		err = generateErr(t.wrap(op, err))
		t.cleanupFailed(ctx, ref, err)
		return nil, err
	}

	k := t.newKey(ref, signer)
	if mErr := checkPublic(spec, signer.Public()); mErr != nil {
		if dErr := signer.Delete(); dErr != nil {
			t.destroyLeft(ctx, ref, wrap("destroy key", dErr), "mismatched key pair")
		}
		return nil, &Error{Op: op, Err: ErrKeyMismatch, cause: mErr}
	}
	return k, nil
}

// CanGenerate reports, without touching the token, whether GenerateKeyPair
// could make spec, by the token's profile: an error wrapping ErrUnsupported
// if spec is invalid, the token does not list its mechanism or size, no
// template shape gave a protected key that signs, or its keys cannot be
// restricted to signing while Config.RequireSignOnly holds
// (ErrNotSignOnly). Callers check it before they record a key that could
// never exist. Before the first connection (a Started Token) only spec
// itself is checked; GenerateKeyPair then refuses as unavailable.
func (t *Token) CanGenerate(spec KeySpec) error {
	const op = "generate key pair"
	if err := spec.Validate(); err != nil {
		return err
	}
	p := t.Profile()
	if p == nil {
		return nil
	}
	kp := p.Key(spec.Type)
	switch {
	case kp.Mechanism == nil:
		return &Error{Op: op, Token: t.label, Err: ErrUnsupported, cause: fmt.Errorf("%v: the token does not list %s", spec, mechName(genMechanism[spec.Type]))}
	case !kp.Usable():
		return &Error{Op: op, Token: t.label, Err: ErrUnsupported, cause: fmt.Errorf("%v: %v", spec, kp.Err)}
	case !sizeInRange(spec, *kp.Mechanism):
		return &Error{Op: op, Token: t.label, Err: ErrUnsupported,
			cause: fmt.Errorf("%v: the token generates %v keys of %d to %d bits", spec, spec.Type, kp.Mechanism.MinKeySize, kp.Mechanism.MaxKeySize)}
	case kp.sizeErr(spec) != nil:
		return &Error{Op: op, Token: t.label, Err: ErrUnsupported, cause: fmt.Errorf("%v: the token's trial failed: %v", spec, kp.sizeErr(spec))}
	case t.cfg.RequireSignOnly && !kp.Usage.SignOnly():
		return &Error{Op: op, Token: t.label, Err: ErrNotSignOnly,
			cause: fmt.Errorf("%v keys on this token get usage %q, not signing only (hsm.require_sign_only)", spec.Type, kp.Usage)}
	}
	return nil
}

// sizeInRange reports whether the mechanism's key sizes admit spec (RSA
// modulus and Weierstrass curve bits; Edwards curves have one size each).
func sizeInRange(spec KeySpec, m Mechanism) bool {
	bits := uint(spec.Bits)
	switch spec.Type {
	case KeyECDSA:
		bits = uint(spec.Curve.Params().BitSize)
	case KeyEd25519, KeyEd448:
		return true
	}
	return m.MaxKeySize == 0 || bits >= m.MinKeySize && bits <= m.MaxKeySize
}

// checkPublic verifies that the token generated what was asked for.
func checkPublic(spec KeySpec, pub crypto.PublicKey) error {
	switch spec.Type {
	case KeyRSA:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("want RSA public key, token returned %T", pub)
		}
		if k.N.BitLen() != spec.Bits || k.E != rsaExponent {
			return fmt.Errorf("want RSA-%d e=%d, token returned RSA-%d e=%d", spec.Bits, rsaExponent, k.N.BitLen(), k.E)
		}
	case KeyECDSA:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("want ECDSA public key, token returned %T", pub)
		}
		if k.Curve != spec.Curve {
			return fmt.Errorf("want curve %s, token returned %s", spec.Curve.Params().Name, k.Curve.Params().Name)
		}
	default:
		return fmt.Errorf("key type %v", spec.Type)
	}
	return nil
}

// cleanupFailed removes whatever a failed generation may have left: crypto11
// returns an error without the handles if reading the new public key fails after
// C_GenerateKeyPair succeeded. ref.ID is fresh, so destroying by reference only
// touches this attempt. This is the only C_FindObjects on the generation path,
// and only on failure; nothing was created when no session was obtained.
func (t *Token) cleanupFailed(ctx context.Context, ref KeyRef, genErr error) {
	var e *Error
	if errors.As(genErr, &e) && e.CKR == 0 && errors.Is(genErr, ErrUnavailable) {
		return
	}
	switch err := t.DestroyKey(context.WithoutCancel(ctx), ref); {
	case err == nil:
		t.log.Warn().Str("key", ref.String()).Msg("hsm: removed objects left by failed generation")
	case !errors.Is(err, ErrNotFound):
		t.log.Warn().Err(err).Str("key", ref.String()).Msg("hsm: could not clean up after failed generation")
	}
}

// destroyLeft destroys by reference a key pair a generation refused after
// destroying it by handle failed (first): a key no caller will record must
// not stay, and an audit or ACME account key is never swept as an orphan.
func (t *Token) destroyLeft(ctx context.Context, ref KeyRef, first error, what string) {
	if err := t.DestroyKey(context.WithoutCancel(ctx), ref); err != nil && !errors.Is(err, ErrNotFound) {
		t.log.Error().Err(first).AnErr("again", err).Str("key", ref.String()).
			Msg("hsm: could not destroy " + what + "; it is left on the token")
	}
}

// keyTypeOf names the key type of a public key.
func keyTypeOf(pub crypto.PublicKey) KeyType {
	switch pub.(type) {
	case *rsa.PublicKey:
		return KeyRSA
	case *ecdsa.PublicKey:
		return KeyECDSA
	}
	return 0
}

// checkUsage sets k's usage: the profile's, which the trial read back from
// a key made with the same template, or, for keys on the raw handle, the
// key's own (one attribute read by handle). A key that may do more than
// the profile says — more than csrd would record for it — is destroyed:
// ErrKeyMismatch.
func (t *Token) checkUsage(ctx context.Context, k *Key, want Usage) error {
	const op = "generate key pair"
	k.usage = want
	if k.rk == nil {
		return nil
	}
	var got Usage
	err := t.withRawSession(ctx, op, func(sh pkcs11.SessionHandle) error {
		a, err := t.readBools(sh, k.rk.priv, usageAttributes)
		got = usageOf(a)
		return err
	})
	if err == nil && got != want {
		err = &Error{Op: op, Token: t.label, Err: ErrKeyMismatch, cause: fmt.Errorf("key got usage %q, the token's profile says %q", got, want)}
	}
	if err != nil {
		if dErr := k.Destroy(context.WithoutCancel(ctx)); dErr != nil {
			t.destroyLeft(ctx, k.ref, dErr, "key whose usage differs from the profile's")
		}
		return err
	}
	k.usage = got
	return nil
}
