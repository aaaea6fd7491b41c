package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"
)

// AuditKeyLabel is the CKA_LABEL of the token's audit key: an ECDSA P-256
// key pair that signs checkpoints of csrd's audit log. Like KEKLabel it
// belongs to no record and is not of the form csrd gives record keys
// (csrd-<digits>), so reconciliation never takes it for an orphan. The
// "v1" names the checkpoint format, not a rotation generation.
const AuditKeyLabel = "csrd-audit-v1"

// auditKeyCache holds the audit key once found or made. The *Key finds
// its handles again after a reconnect (Key.bound); a key that vanished
// from the token is dropped by AuditKey.Sign, so the next use searches.
type auditKeyCache struct {
	mu  sync.Mutex
	key *Key
}

// AuditKey is the token's audit key: a crypto.Signer whose private half is
// sensitive, never extractable, generated in the token, unmodifiable and
// able to sign only. Sign takes a SHA-256 digest and returns an ASN.1 DER
// ECDSA signature.
type AuditKey struct {
	tok *Token
	key *Key
}

// Public returns the key's *ecdsa.PublicKey.
func (a *AuditKey) Public() crypto.PublicKey { return a.key.Public() }

// Ref names the key pair on the token.
func (a *AuditKey) Ref() KeyRef { return a.key.Ref() }

// Sign signs a SHA-256 digest in the token. A key the token no longer has
// is forgotten, so the next AuditKey call searches (or creates) again.
func (a *AuditKey) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != crypto.SHA256 {
		return nil, classErr("sign audit checkpoint", ErrUnsupported, "the audit key signs SHA-256 digests")
	}
	sig, err := a.key.Sign(rand, digest, opts)
	if errors.Is(err, ErrNotFound) {
		a.tok.audit.mu.Lock()
		if a.tok.audit.key == a.key {
			a.tok.audit.key = nil
		}
		a.tok.audit.mu.Unlock()
	}
	return sig, err
}

// AuditKey returns the token's audit key, generating it in the token on
// first use. When the token holds several (two processes created one at the
// same moment), the one with the smallest CKA_ID is used; AuditKeys lists
// them all. A key labelled AuditKeyLabel that was ever extractable, is not
// sensitive, was not generated in the token, can do more than sign or is
// not P-256 is never used.
func (t *Token) AuditKey(ctx context.Context) (*AuditKey, error) {
	t.audit.mu.Lock()
	defer t.audit.mu.Unlock()
	if t.audit.key != nil {
		return &AuditKey{tok: t, key: t.audit.key}, nil
	}
	keys, err := t.auditKeys(ctx)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		if keys, err = t.createAuditKey(ctx); err != nil {
			return nil, err
		}
		t.log.Info().Str("label", AuditKeyLabel).Str("key", keys[0].ref.String()).Msg("hsm: audit key created")
	}
	t.audit.key = keys[0]
	return &AuditKey{tok: t, key: keys[0]}, nil
}

// AuditKeys returns every usable audit key on the token (see AuditKey),
// smallest CKA_ID first: the public keys an operator pins.
func (t *Token) AuditKeys(ctx context.Context) ([]*AuditKey, error) {
	keys, err := t.auditKeys(ctx)
	out := make([]*AuditKey, len(keys))
	for i, k := range keys {
		out[i] = &AuditKey{tok: t, key: k}
	}
	return out, err
}

// createAuditKey makes the audit key as every csrd key is made
// (GenerateKeyPair: the profile's template shape, sign-only, sensitive,
// never extractable, and locked — neither half modifiable nor copyable —
// unless the token refuses every locked shape), as an ECDSA P-256 pair
// labelled AuditKeyLabel, and returns the usable audit keys. A new pair
// that fails the audit key's stricter checks is destroyed again: no record
// owns it and reconciliation passes service objects by, so it would stay,
// and the next checkpoint would make another.
func (t *Token) createAuditKey(ctx context.Context) ([]*Key, error) {
	id, err := t.NewKeyID(ctx)
	if err != nil {
		return nil, err
	}
	ref := KeyRef{ID: id, Label: AuditKeyLabel}
	if _, err := t.GenerateKeyPair(ctx, KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}, ref); err != nil {
		return nil, err
	}
	keys, err := t.auditKeys(ctx)
	if err == nil && !slices.ContainsFunc(keys, func(k *Key) bool { return bytes.Equal(k.ref.ID, id) }) {
		err = classErr("audit key", nil, "the key generated as %s does not show the protective attributes asked for; the token does not honour them", AuditKeyLabel)
	}
	if err != nil {
		if dErr := t.DestroyKey(context.WithoutCancel(ctx), ref); dErr != nil {
			t.log.Error().Err(dErr).Str("key", ref.String()).Msg("hsm: could not destroy the rejected audit key; remove it with pkcs11-tool")
		}
		return nil, err
	}
	return keys, nil
}

// auditKeys finds the usable audit keys, smallest CKA_ID first.
func (t *Token) auditKeys(ctx context.Context) ([]*Key, error) {
	const op = "find audit key"
	var ids [][]byte
	err := t.withRawSession(ctx, op, func(sh pkcs11.SessionHandle) error {
		hs, err := t.findObjects(sh, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, AuditKeyLabel),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		})
		if err != nil {
			return err
		}
		for _, h := range hs {
			id, ok, err := t.usableAuditKey(sh, h)
			if err != nil {
				return err
			}
			if ok {
				ids = append(ids, id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(ids, bytes.Compare)
	if err := t.begin(ctx, op); err != nil {
		return nil, err
	}
	defer t.end()
	keys := make([]*Key, 0, len(ids))
	for _, id := range ids {
		s, err := t.c11.FindKeyPair(id, []byte(AuditKeyLabel))
		if err != nil {
			return nil, t.wrap(op, err)
		}
		if s == nil {
			continue // the private half without its public half: unusable
		}
		if k, ok := s.Public().(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
			continue
		}
		keys = append(keys, t.newKey(KeyRef{ID: id, Label: AuditKeyLabel}, s))
	}
	return keys, nil
}

// usableAuditKey reads a candidate's attributes: only a key generated in
// the token, always sensitive, never extractable, that can sign and do
// nothing else may sign the audit log.
func (t *Token) usableAuditKey(sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) ([]byte, bool, error) {
	want := []struct {
		typ uint
		val bool
	}{
		{pkcs11.CKA_SENSITIVE, true},
		{pkcs11.CKA_ALWAYS_SENSITIVE, true},
		{pkcs11.CKA_EXTRACTABLE, false},
		{pkcs11.CKA_NEVER_EXTRACTABLE, true},
		{pkcs11.CKA_LOCAL, true},
		{pkcs11.CKA_SIGN, true},
		{pkcs11.CKA_DECRYPT, false},
		{pkcs11.CKA_UNWRAP, false},
		{pkcs11.CKA_DERIVE, false},
	}
	q := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, nil), pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil)}
	for _, w := range want {
		q = append(q, pkcs11.NewAttribute(w.typ, nil))
	}
	got, err := t.p11.GetAttributeValue(sh, h, q)
	if err != nil {
		return nil, false, err
	}
	p256, err := ecParams(elliptic.P256())
	if err != nil {
		return nil, false, err
	}
	if len(got[0].Value) == 0 || !bytes.Equal(got[1].Value, p256) {
		return nil, false, nil
	}
	for i, w := range want {
		v := got[2+i].Value
		if (len(v) > 0 && v[0] != 0) != w.val {
			return nil, false, nil
		}
	}
	return bytes.Clone(got[0].Value), true, nil
}

// ACMEAccountLabelPrefix starts the CKA_LABEL of every ACME account key
// (enroll names one per CA); the row naming it is in the database, not in
// a key record.
const ACMEAccountLabelPrefix = "csrd-acme-"

// ServiceObject reports whether label names an object csrd keeps on a token
// for itself — the sealing key (KEKLabel), the audit key (AuditKeyLabel),
// the ACME account keys — which no key record owns: reconciliation neither
// counts nor judges them.
func ServiceObject(label string) bool {
	return label == KEKLabel || label == AuditKeyLabel || strings.HasPrefix(label, ACMEAccountLabelPrefix)
}
