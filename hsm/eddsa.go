package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/asn1"
	"fmt"

	"github.com/cloudflare/circl/sign/ed448"
	"github.com/miekg/pkcs11"
)

// PKCS#11 3.0 EdDSA constants; miekg/pkcs11 v1.1.2 predates them.
const (
	ckkECEdwards           = 0x40   // CKK_EC_EDWARDS
	ckmECEdwardsKeyPairGen = 0x1055 // CKM_EC_EDWARDS_KEY_PAIR_GEN
	ckmEdDSA               = 0x1057 // CKM_EDDSA
)

// edParams describes one Edwards curve as PKCS#11 and RFC 8410 name it.
type edParams struct {
	typ       KeyType
	bits      int    // the key size the API speaks of (255, 448)
	oid       []byte // DER OBJECT IDENTIFIER, the CKA_EC_PARAMS csrd writes
	name      string // PrintableString form some tokens write instead
	pubSize   int
	sigSize   int
	newPublic func([]byte) crypto.PublicKey
}

var edCurves = []edParams{
	{
		typ: KeyEd25519, bits: 255, oid: []byte{0x06, 0x03, 0x2b, 0x65, 0x70}, name: "edwards25519",
		pubSize: ed25519.PublicKeySize, sigSize: ed25519.SignatureSize,
		newPublic: func(b []byte) crypto.PublicKey { return ed25519.PublicKey(bytes.Clone(b)) },
	},
	{
		typ: KeyEd448, bits: 448, oid: []byte{0x06, 0x03, 0x2b, 0x65, 0x71}, name: "edwards448",
		pubSize: ed448.PublicKeySize, sigSize: ed448.SignatureSize,
		newPublic: func(b []byte) crypto.PublicKey { return ed448.PublicKey(bytes.Clone(b)) },
	},
}

func edParamsFor(t KeyType) edParams {
	for _, c := range edCurves {
		if c.typ == t {
			return c
		}
	}
	return edParams{}
}

// edParamsFromECParams identifies the curve of a CKA_EC_PARAMS value: the
// RFC 8410 OID or the PrintableString curve name (PKCS#11 3.0 allows both).
func edParamsFromECParams(v []byte) (edParams, bool) {
	var raw asn1.RawValue
	if rest, err := asn1.Unmarshal(v, &raw); err != nil || len(rest) != 0 {
		return edParams{}, false
	}
	for _, c := range edCurves {
		switch {
		case bytes.Equal(v, c.oid):
			return c, true
		case raw.Class == asn1.ClassUniversal && raw.Tag == asn1.TagPrintableString && string(raw.Bytes) == c.name:
			return c, true
		}
	}
	return edParams{}, false
}

// edKey is an EdDSA key pair on the token, driven through the raw handle.
// Object handles of token objects are valid in every session of the
// application, so they are kept rather than searched for.
type edKey struct {
	params    edParams
	priv, pub pkcs11.ObjectHandle
	public    crypto.PublicKey
}

// generateEdDSA generates an Ed25519 or Ed448 key pair with
// CKM_EC_EDWARDS_KEY_PAIR_GEN on a raw session, with the same templates as
// the crypto11 key types (signing only, sensitive, never extractable).
func (t *Token) generateEdDSA(ctx context.Context, spec KeySpec, ref KeyRef) (*Key, error) {
	const op = "generate key pair"
	p := edParamsFor(spec.Type)
	if err := t.requireMechanisms(op, spec.Type.String(), ckmECEdwardsKeyPairGen, ckmEdDSA); err != nil {
		return nil, err
	}
	pubT, privT, err := specAttributes(spec, ref, t.Profile().Key(spec.Type).Template)
	if err != nil {
		return nil, err
	}

	var k *edKey
	err = t.withWorkSession(ctx, op, func(sh pkcs11.SessionHandle) error {
		pubH, privH, err := t.p11.GenerateKeyPair(sh,
			[]*pkcs11.Mechanism{pkcs11.NewMechanism(ckmECEdwardsKeyPairGen, nil)},
			attrList(pubT), attrList(privT))
		if err != nil {
			return err
		}
		_, pub, rErr := t.readEdPublic(sh, pubH, spec.Type)
		if rErr != nil {
			// The pair exists but is unusable: destroy it here, by handle.
			_ = t.p11.DestroyObject(sh, privH)
			_ = t.p11.DestroyObject(sh, pubH)
			return &Error{Op: op, Err: ErrKeyMismatch, cause: rErr}
		}
		k = &edKey{params: p, priv: privH, pub: pubH, public: pub}
		return nil
	})
	if err != nil {
		t.cleanupFailed(ctx, ref, err)
		return nil, err
	}
	t.log.Debug().Str("key", ref.String()).Stringer("spec", spec).Msg("hsm: key pair generated")
	return t.newEdKey(ref, k), nil
}

// isEd reports whether k is an Edwards key (driven on the raw handle).
func (k *Key) isEd() bool {
	switch k.pub.(type) {
	case ed25519.PublicKey, ed448.PublicKey:
		return true
	}
	return false
}

// boundEd returns k's Edwards handles on the current connection, finding
// the pair again after a reconnect (object handles do not survive
// C_Finalize). Call between begin and end.
func (k *Key) boundEd(op string) (*edKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.epoch == k.tok.epoch {
		return k.ed, nil
	}
	ed, err := k.tok.findEdKey(context.Background(), k.ref)
	switch {
	case err != nil:
		return nil, err
	case ed == nil:
		return nil, classErr(op, ErrNotFound, "key pair %s not on the token after reconnecting", k.ref)
	}
	k.ed, k.epoch = ed, k.tok.epoch
	k.tok.log.Info().Str("key", k.ref.String()).Msg("hsm: key handle found again after reconnect")
	return ed, nil
}

// readEdPublic reads CKA_EC_PARAMS and CKA_EC_POINT of an Edwards public key
// and checks that it is on the curve expected (want != 0) or any.
func (t *Token) readEdPublic(sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, want KeyType) (edParams, crypto.PublicKey, error) {
	got, err := t.p11.GetAttributeValue(sh, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil),
	})
	if err != nil {
		return edParams{}, nil, err
	}
	p, ok := edParamsFromECParams(got[0].Value)
	if !ok {
		return edParams{}, nil, fmt.Errorf("CKA_EC_PARAMS %x is not an Edwards curve", got[0].Value)
	}
	if want != 0 && p.typ != want {
		return edParams{}, nil, fmt.Errorf("want %v, token returned %v", want, p.typ)
	}
	point, err := edPoint(got[1].Value, p.pubSize)
	if err != nil {
		return edParams{}, nil, err
	}
	return p, p.newPublic(point), nil
}

// edPoint decodes CKA_EC_POINT of an Edwards key: SoftHSM (and PKCS#11 3.0's
// examples) wrap it in a DER OCTET STRING, the current OASIS text says the
// raw encoding. Both are accepted; anything else is an error.
func edPoint(v []byte, size int) ([]byte, error) {
	if len(v) == size {
		return v, nil
	}
	var inner []byte
	if rest, err := asn1.Unmarshal(v, &inner); err == nil && len(rest) == 0 && len(inner) == size {
		return inner, nil
	}
	return nil, fmt.Errorf("CKA_EC_POINT of %d bytes is neither a %d-byte point nor a DER OCTET STRING holding one", len(v), size)
}

// edSign signs msg with pure EdDSA (CKM_EDDSA without parameters: Ed25519,
// or Ed448 with an empty context). Pre-hashed variants and contexts are
// refused rather than silently ignored.
func (t *Token) edSign(k *edKey, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	const op = "sign"
	if opts != nil && opts.HashFunc() != 0 {
		return nil, classErr(op, ErrUnsupported, "%v signs whole messages (pure EdDSA), not %v digests", k.params.typ, opts.HashFunc())
	}
	switch o := opts.(type) {
	case *ed25519.Options:
		if o.Context != "" {
			return nil, classErr(op, ErrUnsupported, "EdDSA with a context")
		}
	case ed448.SignerOptions:
		if o.Scheme != ed448.ED448 || o.Context != "" {
			return nil, classErr(op, ErrUnsupported, "Ed448ph or Ed448 with a context")
		}
	}
	var sig []byte
	err := t.withWorkSession(context.Background(), op, func(sh pkcs11.SessionHandle) error {
		if err := t.p11.SignInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdDSA, nil)}, k.priv); err != nil {
			return err
		}
		var err error
		sig, err = t.p11.Sign(sh, msg)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(sig) != k.params.sigSize {
		return nil, classErr(op, nil, "token returned a %d-byte %v signature, want %d", len(sig), k.params.typ, k.params.sigSize)
	}
	return sig, nil
}

// destroyHandles destroys objects by handle on a raw session.
func (t *Token) destroyHandles(ctx context.Context, op string, hs ...pkcs11.ObjectHandle) error {
	return t.withRawSession(ctx, op, func(sh pkcs11.SessionHandle) error {
		for _, h := range hs {
			if err := t.p11.DestroyObject(sh, h); err != nil {
				return err
			}
		}
		return nil
	})
}

// attrList turns a template map into the list miekg/pkcs11 takes.
func attrList[M ~map[uint]*pkcs11.Attribute](m M) []*pkcs11.Attribute {
	l := make([]*pkcs11.Attribute, 0, len(m))
	for _, a := range m {
		l = append(l, a)
	}
	return l
}
