package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"

	"github.com/miekg/pkcs11"
)

// RSA and ECDSA keys on the raw handle.
//
// crypto11 generates RSA and ECDSA keys with templates it completes itself
// (CKA_VERIFY and CKA_ENCRYPT true on the public key unless present) and
// signs only digests. Where the profile says the token needs another
// template shape or hashes in the token (profile.go), the key is made and
// used here instead, on the raw handle, with exactly the templates csrd
// chose; a *Key hides which path holds it.

// rawKey is an RSA or ECDSA key pair driven through the raw handle. Object
// handles of token objects are valid in every session of the application.
type rawKey struct {
	typ       KeyType
	priv, pub pkcs11.ObjectHandle
	public    crypto.PublicKey
	signing   Signing
}

// generateRaw generates spec's key pair on a raw session with template
// shape tmpl and reads its public key back.
func (t *Token) generateRaw(ctx context.Context, spec KeySpec, ref KeyRef, tmpl Template, signing Signing) (*Key, error) {
	const op = "generate key pair"
	tm, err := specTemplates(spec, ref, tmpl)
	if err != nil {
		return nil, err
	}
	var k *rawKey
	err = t.withWorkSession(ctx, op, func(sh pkcs11.SessionHandle) error {
		k, err = t.generateRawOn(sh, spec, tm, signing)
		return err
	})
	if err != nil {
		t.cleanupFailed(ctx, ref, err)
		return nil, err
	}
	return &Key{tok: t, ref: ref.clone(), pub: k.public, rk: k, epoch: t.epoch}, nil
}

// generateRawOn is generateRaw on session sh; a pair whose public key does
// not match spec is destroyed (ErrKeyMismatch).
func (t *Token) generateRawOn(sh pkcs11.SessionHandle, spec KeySpec, tm Templates, signing Signing) (*rawKey, error) {
	pubH, privH, err := t.p11.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(tm.Mechanism, nil)}, tm.Public, tm.Private)
	if err != nil {
		return nil, err
	}
	pub, err := t.readPublic(sh, pubH, spec.Type)
	if err == nil {
		err = checkPublic(spec, pub)
	}
	if err != nil {
		_ = t.p11.DestroyObject(sh, privH)
		_ = t.p11.DestroyObject(sh, pubH)
		return nil, &Error{Op: "generate key pair", Err: ErrKeyMismatch, cause: err}
	}
	return &rawKey{typ: spec.Type, priv: privH, pub: pubH, public: pub, signing: signing}, nil
}

// readPublic reads an RSA or EC public key object.
func (t *Token) readPublic(sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, typ KeyType) (crypto.PublicKey, error) {
	switch typ {
	case KeyRSA:
		got, err := t.p11.GetAttributeValue(sh, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil), pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil),
		})
		if err != nil {
			return nil, err
		}
		e := new(big.Int).SetBytes(got[1].Value)
		if !e.IsInt64() || e.Int64() > 1<<31-1 || e.Int64() < 3 {
			return nil, fmt.Errorf("RSA public exponent %v out of range", e)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(got[0].Value), E: int(e.Int64())}, nil
	case KeyECDSA:
		got, err := t.p11.GetAttributeValue(sh, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil), pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil),
		})
		if err != nil {
			return nil, err
		}
		return ecPublic(got[0].Value, got[1].Value)
	}
	return nil, fmt.Errorf("key type %v has no raw public key", typ)
}

// ecPublic decodes CKA_EC_PARAMS (a named-curve OID) and CKA_EC_POINT (a
// DER OCTET STRING around the uncompressed point, as PKCS#11 specifies; a
// bare point is accepted too). Anything else is refused, not repaired: a
// module that writes the point wrongly fails with it later too —
// tpm2-pkcs11 writes P-521's 133-byte point with a one-byte length and then
// cannot sign with the key, leaving it busy and undeletable.
func ecPublic(params, point []byte) (*ecdsa.PublicKey, error) {
	var curve elliptic.Curve
	for c, oid := range curveOIDs {
		if der, _ := asn1.Marshal(oid); string(der) == string(params) {
			curve = c
		}
	}
	if curve == nil {
		return nil, fmt.Errorf("CKA_EC_PARAMS %x is not a curve csrd knows", params)
	}
	var inner []byte
	if rest, err := asn1.Unmarshal(point, &inner); err == nil && len(rest) == 0 {
		point = inner
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return nil, fmt.Errorf("CKA_EC_POINT of %d bytes is neither a DER OCTET STRING holding an uncompressed point on %s nor such a point", len(point), curve.Params().Name)
	}
	return pub, nil
}

// rawSign signs digest (hashed as opts says) with a raw key.
func (t *Token) rawSign(k *rawKey, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	const op = "sign"
	if k.signing == SignHashInToken {
		return nil, classErr(op, ErrUnsupported, "token %q signs %v only by hashing the message itself; use SignMessage", t.label, k.typ)
	}
	mech, in, err := digestMechanism(k.typ, digest, opts)
	if err != nil {
		return nil, err
	}
	sig, err := t.signOnToken(op, k.priv, mech, in)
	if err != nil {
		return nil, err
	}
	return rawSignature(k.typ, sig)
}

// rawSignMessage signs msg with a raw key: hashed in the token when the
// profile says so, else hashed here and signed as a digest.
func (t *Token) rawSignMessage(k *rawKey, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	const op = "sign"
	h := opts.HashFunc()
	if k.signing != SignHashInToken {
		if !h.Available() {
			return nil, classErr(op, ErrUnsupported, "hash %v", h)
		}
		d := h.New()
		d.Write(msg)
		return t.rawSign(k, d.Sum(nil), opts)
	}
	mech, err := messageMechanism(k.typ, opts)
	if err != nil {
		return nil, err
	}
	sig, err := t.signOnToken(op, k.priv, mech, msg)
	if err != nil {
		return nil, err
	}
	return rawSignature(k.typ, sig)
}

// signOnToken runs C_SignInit and C_Sign on a work session.
func (t *Token) signOnToken(op string, priv pkcs11.ObjectHandle, mech *pkcs11.Mechanism, in []byte) ([]byte, error) {
	var sig []byte
	err := t.withWorkSession(context.Background(), op, func(sh pkcs11.SessionHandle) error {
		if err := t.p11.SignInit(sh, []*pkcs11.Mechanism{mech}, priv); err != nil {
			return err
		}
		var err error
		sig, err = t.p11.Sign(sh, in)
		return err
	})
	return sig, err
}

// digestInfoPrefix is the DER DigestInfo header PKCS#1 v1.5 puts before
// the digest (RFC 8017 section 9.2, note 1).
var digestInfoPrefix = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// pssHash are the PSS parameters of each hash: CKM_*, CKG_MGF1_*.
var pssHash = map[crypto.Hash][2]uint{
	crypto.SHA256: {pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256},
	crypto.SHA384: {pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384},
	crypto.SHA512: {pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512},
}

// digestMechanism is the mechanism and input that sign digest.
func digestMechanism(typ KeyType, digest []byte, opts crypto.SignerOpts) (*pkcs11.Mechanism, []byte, error) {
	const op = "sign"
	h := opts.HashFunc()
	if h == 0 || len(digest) != h.Size() {
		return nil, nil, classErr(op, ErrUnsupported, "digest of %d bytes for %v", len(digest), h)
	}
	switch typ {
	case KeyECDSA:
		return pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil), digest, nil
	case KeyRSA:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			m, err := pssMechanism(pkcs11.CKM_RSA_PKCS_PSS, h, pss)
			return m, digest, err
		}
		prefix, ok := digestInfoPrefix[h]
		if !ok {
			return nil, nil, classErr(op, ErrUnsupported, "PKCS#1 v1.5 with %v", h)
		}
		return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil), append(append([]byte{}, prefix...), digest...), nil
	}
	return nil, nil, classErr(op, ErrUnsupported, "key type %v", typ)
}

// messageMechanism is the hash-and-sign mechanism for opts.
func messageMechanism(typ KeyType, opts crypto.SignerOpts) (*pkcs11.Mechanism, error) {
	const op = "sign"
	h := opts.HashFunc()
	mechs := map[KeyType]map[crypto.Hash]uint{
		KeyRSA:   {crypto.SHA256: pkcs11.CKM_SHA256_RSA_PKCS, crypto.SHA384: pkcs11.CKM_SHA384_RSA_PKCS, crypto.SHA512: pkcs11.CKM_SHA512_RSA_PKCS},
		KeyECDSA: {crypto.SHA256: pkcs11.CKM_ECDSA_SHA256, crypto.SHA384: pkcs11.CKM_ECDSA_SHA384, crypto.SHA512: pkcs11.CKM_ECDSA_SHA512},
	}
	if pss, ok := opts.(*rsa.PSSOptions); ok && typ == KeyRSA {
		pssMechs := map[crypto.Hash]uint{crypto.SHA256: pkcs11.CKM_SHA256_RSA_PKCS_PSS, crypto.SHA384: pkcs11.CKM_SHA384_RSA_PKCS_PSS, crypto.SHA512: pkcs11.CKM_SHA512_RSA_PKCS_PSS}
		m, ok := pssMechs[h]
		if !ok {
			return nil, classErr(op, ErrUnsupported, "PSS with %v", h)
		}
		return pssMechanism(m, h, pss)
	}
	m, ok := mechs[typ][h]
	if !ok {
		return nil, classErr(op, ErrUnsupported, "%v with %v hashed in the token", typ, h)
	}
	return pkcs11.NewMechanism(m, nil), nil
}

// pssMechanism builds a PSS mechanism with an explicit salt length: the
// hash's size, or the one opts names.
func pssMechanism(m uint, h crypto.Hash, pss *rsa.PSSOptions) (*pkcs11.Mechanism, error) {
	p, ok := pssHash[h]
	if !ok {
		return nil, classErr("sign", ErrUnsupported, "PSS with %v", h)
	}
	salt := h.Size()
	switch {
	case pss.SaltLength > 0:
		salt = pss.SaltLength
	case pss.SaltLength != rsa.PSSSaltLengthEqualsHash && pss.SaltLength != rsa.PSSSaltLengthAuto:
		return nil, classErr("sign", ErrUnsupported, "PSS salt length %d", pss.SaltLength)
	}
	return pkcs11.NewMechanism(m, pkcs11.NewPSSParams(p[0], p[1], uint(salt))), nil
}

// rawSignature turns the token's signature into Go's form: ECDSA's r||s
// becomes DER Ecdsa-Sig-Value.
func rawSignature(typ KeyType, sig []byte) ([]byte, error) {
	if typ != KeyECDSA {
		return sig, nil
	}
	if len(sig) == 0 || len(sig)%2 != 0 {
		return nil, classErr("sign", nil, "token returned an ECDSA signature of %d bytes", len(sig))
	}
	n := len(sig) / 2
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])})
}

// boundRaw returns k's raw handles on the current connection, finding the
// pair again after a reconnect. Call between begin and end.
func (k *Key) boundRaw(op string) (*rawKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.epoch == k.tok.epoch {
		return k.rk, nil
	}
	rk, err := k.tok.findRawKey(context.Background(), k.ref, k.rk.signing)
	switch {
	case err != nil:
		return nil, err
	case rk == nil:
		return nil, classErr(op, ErrNotFound, "key pair %s not on the token after reconnecting", k.ref)
	}
	k.rk, k.epoch = rk, k.tok.epoch
	k.tok.log.Info().Str("key", k.ref.String()).Msg("hsm: key handle found again after reconnect")
	return rk, nil
}

// findRawKey returns ref's RSA or ECDSA key pair with raw handles, nil if
// ref names no such pair.
func (t *Token) findRawKey(ctx context.Context, ref KeyRef, signing Signing) (*rawKey, error) {
	const op = "find key"
	var k *rawKey
	err := t.withRawSession(ctx, op, func(sh pkcs11.SessionHandle) error {
		for _, kt := range []struct {
			typ KeyType
			ckk uint
		}{{KeyRSA, pkcs11.CKK_RSA}, {KeyECDSA, pkcs11.CKK_EC}} {
			tmpl := append(refTemplate(ref), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, kt.ckk))
			privs, err := t.findObjects(sh, append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)))
			if err != nil {
				return err
			}
			pubs, err := t.findObjects(sh, append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY)))
			if err != nil {
				return err
			}
			switch {
			case len(privs) == 0 && len(pubs) == 0:
				continue
			case len(privs) != 1 || len(pubs) != 1:
				return classErr(op, ErrNotFound, "%d private and %d public keys share reference %s", len(privs), len(pubs), ref)
			}
			pub, err := t.readPublic(sh, pubs[0], kt.typ)
			if err != nil {
				return classErr(op, nil, "%s: %v", ref, err)
			}
			if signing == 0 {
				signing = t.Profile().Key(kt.typ).Signing
			}
			k = &rawKey{typ: kt.typ, priv: privs[0], pub: pubs[0], public: pub, signing: signing}
			return nil
		}
		return nil
	})
	return k, err
}

// SignMessage signs the whole message msg, hashed as opts says: inside
// the token for keys whose token hashes and signs in one mechanism (the
// profile's SignHashInToken), else hashed here and signed as a digest.
// It makes *Key a crypto.MessageSigner, which crypto/x509 and csr prefer
// to Sign.
func (k *Key) SignMessage(rand io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	const op = "sign"
	if opts == nil {
		return nil, fmt.Errorf("hsm: %s: nil SignerOpts", op)
	}
	if k.rk == nil || k.isEd() {
		return crypto.SignMessage(signerOnly{k}, rand, msg, opts)
	}
	sig, err := k.signMessage(msg, opts)
	if k.tok.spentAfter(err) { // as Sign
		sig, err = k.signMessage(msg, opts)
	}
	return sig, err
}

// signMessage is SignMessage on the raw handle.
func (k *Key) signMessage(msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	const op = "sign"
	if err := k.tok.beginLoading(context.Background(), op, k.ref.ID); err != nil {
		return nil, err
	}
	defer k.tok.end()
	rk, err := k.boundRaw(op)
	if err != nil {
		return nil, err
	}
	sig, err := k.tok.rawSignMessage(rk, msg, opts)
	if err != nil {
		return nil, k.tok.judgeSign(rk.typ, err)
	}
	k.tok.proved(signProof(rk.typ))
	return sig, nil
}

// signerOnly hides SignMessage, so crypto.SignMessage hashes and calls Sign.
type signerOnly struct{ k *Key }

func (s signerOnly) Public() crypto.PublicKey { return s.k.Public() }
func (s signerOnly) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.k.Sign(rand, digest, opts)
}
