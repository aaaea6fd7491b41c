package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	_ "crypto/sha512" // SHA-384 and SHA-512 for TryKey
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cloudflare/circl/sign/ed448"
	"github.com/miekg/pkcs11"
)

// Trial rounds.
//
// PKCS#11 cannot say which template a token accepts, what usage its keys
// really get or whether CKM_RSA_PKCS signs with a sign-only key: modules
// differ, and answer with CKR_GENERAL_ERROR when they refuse. So at the
// first connection csrd tries, for each key type the token lists: one key
// pair of the smallest size csrd offers, generated with each template
// shape in turn (profile.go) until one gives a key that keeps every
// protective attribute and signs; its usage is read back, it signs as
// crypto11 would (a digest) or else with the token hashing the message,
// the signature is verified, and the pair is destroyed. At most two
// generations per key type, bounded like every PKCS#11 call only by the
// token; nothing is left behind but, after a crash in between, a pair
// labelled TrialLabel, which reconciliation reports as an orphan.

// TrialLabel is the CKA_LABEL of the trial rounds' key pairs. It has csrd's
// prefix, so a pair a crash left behind is listed by reconciliation as a
// foreign orphan (no record has the label); reconciliation never destroys
// foreign objects, so the operator removes it (pkcs11-tool --delete-object).
const TrialLabel = "csrd-trial"

// trialMessage is what the trial keys sign.
var trialMessage = []byte("csrd token profile trial")

// protectiveAttributes must read back as wanted on every key csrd keeps.
var protectiveAttributes = map[uint]bool{
	pkcs11.CKA_TOKEN: true, pkcs11.CKA_PRIVATE: true, pkcs11.CKA_SENSITIVE: true, pkcs11.CKA_EXTRACTABLE: false,
}

// usageAttributes are the private key's usages, read back into a Usage.
var usageAttributes = []uint{pkcs11.CKA_SIGN, pkcs11.CKA_DECRYPT, pkcs11.CKA_UNWRAP, pkcs11.CKA_DERIVE, pkcs11.CKA_SIGN_RECOVER}

func usageOf(a map[uint]bool) Usage {
	return Usage{Sign: a[pkcs11.CKA_SIGN], Decrypt: a[pkcs11.CKA_DECRYPT], Unwrap: a[pkcs11.CKA_UNWRAP],
		Derive: a[pkcs11.CKA_DERIVE], SignRecover: a[pkcs11.CKA_SIGN_RECOVER]}
}

// learnProfile reads the token's own answers and runs the trial rounds on
// a session of their own. Only reading the token's answers can fail it; a
// key type whose trial fails is marked unusable in the profile.
func (t *Token) learnProfile() (*Profile, error) {
	start := time.Now()
	p, err := t.readProfile()
	if err != nil {
		return nil, err
	}
	sh, err := t.p11.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return nil, wrap("read token profile", err)
	}
	defer func() { _ = t.p11.CloseSession(sh) }()
	for _, typ := range []KeyType{KeyRSA, KeyECDSA, KeyEd25519, KeyEd448} {
		p.Keys = append(p.Keys, t.tryKeyType(sh, p, typ))
	}
	t.logProfile(p, time.Since(start))
	return p, nil
}

// trialSpec is the key a trial of typ makes: the smallest csrd offers in
// the mechanism's range.
func trialSpec(typ KeyType, m Mechanism) (KeySpec, bool) {
	var specs []KeySpec
	switch typ {
	case KeyRSA:
		specs = []KeySpec{{Type: KeyRSA, Bits: 2048}, {Type: KeyRSA, Bits: 3072}, {Type: KeyRSA, Bits: 4096}}
	case KeyECDSA:
		specs = []KeySpec{{Type: KeyECDSA, Curve: elliptic.P256()}, {Type: KeyECDSA, Curve: elliptic.P384()}, {Type: KeyECDSA, Curve: elliptic.P521()}}
	default:
		specs = []KeySpec{{Type: typ}}
	}
	for _, s := range specs {
		if sizeInRange(s, m) {
			return s, true
		}
	}
	return KeySpec{}, false
}

func (t *Token) tryKeyType(sh pkcs11.SessionHandle, p *Profile, typ KeyType) KeyProfile {
	kp := KeyProfile{Type: typ}
	m, ok := p.Mechanism(genMechanism[typ])
	if !ok {
		kp.Err = fmt.Errorf("the token does not list %s", mechName(genMechanism[typ]))
		return kp
	}
	kp.Mechanism = &m
	if _, ok := p.Mechanism(ckmEdDSA); !ok && (typ == KeyEd25519 || typ == KeyEd448) {
		kp.Err = fmt.Errorf("the token does not list %s", mechName(ckmEdDSA))
		return kp
	}
	spec, ok := trialSpec(typ, m)
	if !ok {
		kp.Err = fmt.Errorf("the token generates %v keys of %d to %d bits, none of a size csrd offers", typ, m.MinKeySize, m.MaxKeySize)
		return kp
	}
	kp.Trial = spec.String()
	for _, shape := range templates {
		r, err := t.trialRound(sh, spec, shape)
		if err != nil {
			kp.Refusals = append(kp.Refusals, shapeName(shape)+" template: "+trialError(err))
			continue
		}
		kp.Template, kp.Omitted, kp.Usage, kp.Signing = shape, shape.omitted(), r.usage, r.signing
		kp.Modifiable, kp.ModifiableEnforced = r.modifiable, r.enforced
		t.proved(generateProof(spec))
		t.proved(signProof(typ))
		kp.Sizes = t.trySizes(sh, kp, spec)
		return kp
	}
	kp.Err = fmt.Errorf("no template shape gave a protected key that signs (%s)", strings.Join(kp.Refusals, "; "))
	return kp
}

// trySizes tries the other Weierstrass curves in the mechanism's range
// with the shape that worked for the first: each must generate and sign
// the same way. RSA sizes differ only in modulus length, which the
// mechanism's range states.
func (t *Token) trySizes(sh pkcs11.SessionHandle, kp KeyProfile, first KeySpec) []SizeTrial {
	if kp.Type != KeyECDSA {
		return nil
	}
	var out []SizeTrial
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		spec := KeySpec{Type: KeyECDSA, Curve: c}
		if spec.String() == first.String() || !sizeInRange(spec, *kp.Mechanism) {
			continue
		}
		r, err := t.trialRound(sh, spec, kp.Template)
		switch {
		case err != nil:
			err = errors.New(trialError(err))
		case r.signing != kp.Signing:
			err = fmt.Errorf("it signs only by %s", r.signing)
		default:
			t.proved(generateProof(spec))
		}
		out = append(out, SizeTrial{Spec: spec.String(), Err: err})
	}
	return out
}

// trialError says what failed in a trial round: the step and the return
// value (an hsm class such as "unavailable" means nothing in a trial).
func trialError(err error) string {
	var e *Error
	if errors.As(err, &e) && e.CKR != 0 {
		return e.Op + ": " + e.CodeName()
	}
	return strings.TrimPrefix(err.Error(), "hsm: ")
}

func shapeName(s Template) string {
	name := "full"
	if !s.PublicUsage() {
		name = "no-public-usage"
	}
	if !s.Locked() {
		name += "-unlocked"
	}
	return name
}

type trialResult struct {
	usage                Usage
	signing              Signing
	modifiable, enforced bool
}

// trialRound generates spec's pair with shape, checks and signs with it,
// and destroys it.
func (t *Token) trialRound(sh pkcs11.SessionHandle, spec KeySpec, shape Template) (trialResult, error) {
	var r trialResult
	id, err := t.p11.GenerateRandom(sh, keyIDSize)
	if err != nil {
		return r, wrap("generate random", err)
	}
	ref := KeyRef{ID: id, Label: TrialLabel}
	tm, err := specTemplates(spec, ref, shape)
	if err != nil {
		return r, err
	}
	pubH, privH, err := t.p11.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(tm.Mechanism, nil)}, tm.Public, tm.Private)
	if err != nil {
		return r, wrap("generate key pair", err)
	}
	defer t.destroyTrial(sh, ref, privH, pubH)
	pub, err := t.trialPublic(sh, pubH, spec)
	if err != nil {
		return r, wrap("read public key", err)
	}
	a, err := t.readBools(sh, privH, append(mapKeys(protectiveAttributes), usageAttributes...))
	if err != nil {
		return r, wrap("read key attributes", err)
	}
	for typ, want := range protectiveAttributes {
		if a[typ] != want {
			return r, fmt.Errorf("the key came out with %s %v: it would not be protected", attrName(typ), a[typ])
		}
	}
	if r.usage = usageOf(a); !r.usage.Sign {
		return r, errors.New("the key came out with CKA_SIGN false")
	}
	if r.signing, err = t.trialSign(sh, spec.Type, shape, privH, pub); err != nil {
		return r, err
	}
	r.modifiable, r.enforced = t.trialModifiable(sh, privH)
	return r, nil
}

// trialPublic reads the trial pair's public key and checks it is spec's.
func (t *Token) trialPublic(sh pkcs11.SessionHandle, pubH pkcs11.ObjectHandle, spec KeySpec) (crypto.PublicKey, error) {
	if spec.Type == KeyEd25519 || spec.Type == KeyEd448 {
		_, pub, err := t.readEdPublic(sh, pubH, spec.Type)
		return pub, err
	}
	pub, err := t.readPublic(sh, pubH, spec.Type)
	if err == nil {
		err = checkPublic(spec, pub)
	}
	return pub, err
}

// trialSign finds how the key signs trialMessage and verifies the
// signature: as crypto11 and edSign do (a digest, or the message for
// EdDSA), or with the token hashing the message itself. Keys of the full
// shape are crypto11's, which signs digests, so that is tried first. RSA
// keys of other shapes live on the raw handle, where hashing in the token
// is as good, and it is tried first: a refused CKM_RSA_PKCS can leave the
// key unusable (tpm2-pkcs11 implements it by RSA decryption, and after the
// sign-only key refuses that, the module keeps the key busy — it can then
// not be destroyed — and hands out wrong object handles until it is
// finalised).
func (t *Token) trialSign(sh pkcs11.SessionHandle, typ KeyType, shape Template, priv pkcs11.ObjectHandle, pub crypto.PublicKey) (Signing, error) {
	if typ == KeyEd25519 || typ == KeyEd448 {
		sig, err := t.signWith(sh, pkcs11.NewMechanism(ckmEdDSA, nil), priv, trialMessage)
		if err == nil && !verifyTrial(pub, crypto.Hash(0), trialMessage, sig) {
			err = errors.New("CKM_EDDSA signature does not verify")
		}
		return SignDigest, err
	}
	order := []Signing{SignDigest, SignHashInToken}
	if typ == KeyRSA && rawShape(shape) {
		order = []Signing{SignHashInToken, SignDigest}
	}
	var failed []string
	for _, how := range order {
		mech, err := t.trialSignOnce(sh, typ, how, priv, pub)
		if err == nil {
			return how, nil
		}
		failed = append(failed, mechName(mech)+": "+trialError(err))
	}
	return 0, fmt.Errorf("the key does not sign (%s)", strings.Join(failed, "; "))
}

// trialSignOnce signs trialMessage one way and verifies the signature; it
// returns the mechanism it used.
func (t *Token) trialSignOnce(sh pkcs11.SessionHandle, typ KeyType, how Signing, priv pkcs11.ObjectHandle, pub crypto.PublicKey) (uint, error) {
	d := sha256.Sum256(trialMessage)
	var (
		mech *pkcs11.Mechanism
		in   = trialMessage
		err  error
	)
	if how == SignDigest {
		mech, in, err = digestMechanism(typ, d[:], crypto.SHA256)
	} else {
		mech, err = messageMechanism(typ, crypto.SHA256)
	}
	if err != nil {
		return 0, err
	}
	sig, err := t.signWith(sh, mech, priv, in)
	if err == nil {
		sig, err = rawSignature(typ, sig)
	}
	if err == nil && !verifyTrial(pub, crypto.SHA256, d[:], sig) {
		err = errors.New("signature does not verify")
	}
	return mech.Mechanism, err
}

func (t *Token) signWith(sh pkcs11.SessionHandle, mech *pkcs11.Mechanism, priv pkcs11.ObjectHandle, in []byte) ([]byte, error) {
	if err := t.p11.SignInit(sh, []*pkcs11.Mechanism{mech}, priv); err != nil {
		return nil, wrap("sign", err)
	}
	sig, err := t.p11.Sign(sh, in)
	return sig, wrap("sign", err)
}

func verifyTrial(pub crypto.PublicKey, h crypto.Hash, digest, sig []byte) bool {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, h, digest, sig) == nil
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, digest, sig)
	case ed25519.PublicKey:
		return ed25519.Verify(k, digest, sig)
	case ed448.PublicKey:
		return ed448.Verify(k, digest, sig, "")
	}
	return false
}

// trialModifiable reads CKA_MODIFIABLE and, when it is false, tries to set
// the key's label to the value it has: a token that enforces the attribute
// refuses even that.
func (t *Token) trialModifiable(sh pkcs11.SessionHandle, priv pkcs11.ObjectHandle) (modifiable, enforced bool) {
	a, err := t.readBools(sh, priv, []uint{pkcs11.CKA_MODIFIABLE})
	if err != nil {
		return true, false // not reported: PKCS#11's default
	}
	if a[pkcs11.CKA_MODIFIABLE] {
		return true, false
	}
	err = t.p11.SetAttributeValue(sh, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, TrialLabel)})
	return false, err != nil
}

// destroyTrial destroys a trial pair, by reference if the handles fail.
func (t *Token) destroyTrial(sh pkcs11.SessionHandle, ref KeyRef, hs ...pkcs11.ObjectHandle) {
	var failed error
	for _, h := range hs {
		if err := t.p11.DestroyObject(sh, h); err != nil {
			failed = err
		}
	}
	if failed == nil {
		return
	}
	left, err := t.findObjects(sh, refTemplate(ref))
	for _, h := range left {
		if dErr := t.p11.DestroyObject(sh, h); dErr != nil {
			err = dErr
		}
	}
	if err != nil {
		t.log.Error().Err(wrap("destroy key", failed)).Str("key", ref.String()).
			Msg("hsm: could not destroy a token profile trial key pair; reconciliation lists it as an orphan, remove it with pkcs11-tool")
	}
}

// readBools reads CK_BBOOL attributes of object h.
func (t *Token) readBools(sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, types []uint) (map[uint]bool, error) {
	q := make([]*pkcs11.Attribute, len(types))
	for i, typ := range types {
		q[i] = pkcs11.NewAttribute(typ, nil)
	}
	got, err := t.p11.GetAttributeValue(sh, h, q)
	if err != nil {
		return nil, err
	}
	out := make(map[uint]bool, len(got))
	for _, a := range got {
		out[a.Type] = len(a.Value) > 0 && a.Value[0] != 0
	}
	return out, nil
}

func mapKeys(m map[uint]bool) []uint {
	out := make([]uint, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// attrName names the attributes csrd sets or checks on its keys.
func attrName(a uint) string {
	if n, ok := attrNames[a]; ok {
		return n
	}
	return fmt.Sprintf("CKA_0x%X", a)
}

var attrNames = map[uint]string{
	pkcs11.CKA_TOKEN: "CKA_TOKEN", pkcs11.CKA_PRIVATE: "CKA_PRIVATE", pkcs11.CKA_SENSITIVE: "CKA_SENSITIVE",
	pkcs11.CKA_EXTRACTABLE: "CKA_EXTRACTABLE", pkcs11.CKA_MODIFIABLE: "CKA_MODIFIABLE", ckaCopyable: "CKA_COPYABLE",
	pkcs11.CKA_SIGN: "CKA_SIGN", pkcs11.CKA_DECRYPT: "CKA_DECRYPT", pkcs11.CKA_DERIVE: "CKA_DERIVE",
	pkcs11.CKA_UNWRAP: "CKA_UNWRAP", pkcs11.CKA_SIGN_RECOVER: "CKA_SIGN_RECOVER", pkcs11.CKA_ENCRYPT: "CKA_ENCRYPT",
	pkcs11.CKA_WRAP: "CKA_WRAP", pkcs11.CKA_VERIFY_RECOVER: "CKA_VERIFY_RECOVER",
}

// logProfile says at start what the token is and what csrd makes on it.
func (t *Token) logProfile(p *Profile, took time.Duration) {
	t.log.Info().Str("manufacturer", p.Manufacturer).Str("model", p.Model).Str("firmware", p.Firmware).
		Uint("max_rw_sessions", p.MaxRwSessions).Int("mechanisms", len(p.Mechanisms)).Bool("sealing", p.Sealing).
		Str("library", p.Library).Int("keys_per_login", p.KeysPerLogin).
		Dur("trials_took", took).Msg("hsm: token profile")
	for _, k := range p.Keys {
		if !k.Usable() {
			t.log.Info().Stringer("key_type", k.Type).AnErr("reason", k.Err).Msg("hsm: token profile: key type not offered")
			continue
		}
		ev := t.log.Info()
		if !k.Usage.SignOnly() || len(k.Omitted) > 0 || (!k.Modifiable && !k.ModifiableEnforced) {
			ev = t.log.Warn()
		}
		ev.Stringer("key_type", k.Type).Str("trial", k.Trial).Str("template", shapeName(k.Template)).
			Strs("omitted", k.Omitted).Stringer("usage", k.Usage).Stringer("signing", k.Signing).
			Bool("modifiable", k.Modifiable).Bool("modifiable_enforced", k.ModifiableEnforced).
			Msg("hsm: token profile: key type offered")
	}
}

// TryKey runs one generate-sign-verify-destroy round of spec on the token,
// as csrd would make and use such a key (CanGenerate first, then the
// profile's template and signing), with a key labelled TrialLabel. It
// returns how long the generation took. Nothing is left behind: a key
// whose signature fails is destroyed too, by reference if need be.
func (t *Token) TryKey(ctx context.Context, spec KeySpec) (time.Duration, error) {
	id, err := t.NewKeyID(ctx)
	if err != nil {
		return 0, err
	}
	ref := KeyRef{ID: id, Label: TrialLabel}
	start := time.Now()
	key, err := t.GenerateKeyPair(ctx, spec, ref)
	took := time.Since(start)
	if err != nil {
		return took, err
	}
	err = verifyKey(key)
	if dErr := key.Destroy(ctx); dErr != nil {
		if rErr := t.DestroyKey(context.WithoutCancel(ctx), ref); rErr != nil && !errors.Is(rErr, ErrNotFound) {
			err = errors.Join(err, fmt.Errorf("hsm: the key %s could not be destroyed: %w", ref, errors.Join(dErr, rErr)))
		}
	}
	return took, err
}

// verifyKey signs trialMessage with key as csr does (the whole message,
// hashed as the key's type wants) and verifies the signature.
func verifyKey(key *Key) error {
	h := crypto.SHA256
	switch pub := key.Public().(type) {
	case *ecdsa.PublicKey:
		h = map[int]crypto.Hash{384: crypto.SHA384, 521: crypto.SHA512}[pub.Curve.Params().BitSize]
		if h == 0 {
			h = crypto.SHA256
		}
	case ed25519.PublicKey, ed448.PublicKey:
		h = 0
	}
	sig, err := key.SignMessage(nil, trialMessage, h)
	if err != nil {
		return err
	}
	msg := trialMessage
	if h != 0 {
		d := h.New()
		d.Write(trialMessage)
		msg = d.Sum(nil)
	}
	if !verifyTrial(key.Public(), h, msg, sig) {
		return classErr("sign", nil, "the token's %T signature does not verify", key.Public())
	}
	return nil
}
