package hsm

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"strings"

	"github.com/miekg/pkcs11"
)

// The methods in this file search the token with C_FindObjects. That is linear
// in the number of objects on many tokens, so they are for start-up,
// reconciliation and operators, not the request path (which keeps *Key handles).

// Attributes are security-relevant attributes of a private key object, as the
// token reports them.
type Attributes struct {
	Sensitive, Extractable, NeverExtractable, AlwaysSensitive bool
	Sign, Decrypt, Unwrap, Derive                             bool
	Token, Private                                            bool
	// Modifiable and Copyable are CKA_MODIFIABLE and CKA_COPYABLE: false
	// for every key csrd makes, so its attributes stay as generated.
	// Copyable is true on a token that does not know CKA_COPYABLE.
	Modifiable, Copyable bool
	KeyType              uint // CKK_* (CKK_RSA 0, CKK_EC 3)
	Label                string
	ID                   []byte
}

// FindKey returns the key pair named by ref, or ErrNotFound. Both halves must
// be on the token: crypto.Signer needs the public key.
func (t *Token) FindKey(ctx context.Context, ref KeyRef) (*Key, error) {
	const op = "find key"
	if err := ref.check(op); err != nil {
		return nil, err
	}
	if err := t.begin(ctx, op); err != nil {
		return nil, err
	}
	defer t.end()
	// crypto11 refuses key types it does not know, so Edwards keys are
	// looked up on the raw handle first.
	switch ed, err := t.findEdKey(ctx, ref); {
	case err != nil:
		return nil, err
	case ed != nil:
		return t.newEdKey(ref, ed), nil
	}
	if t.rawPath(KeyRSA) || t.rawPath(KeyECDSA) {
		switch rk, err := t.findRawKey(ctx, ref, 0); {
		case err != nil:
			return nil, err
		case rk != nil && t.rawPath(rk.typ):
			return &Key{tok: t, ref: ref.clone(), pub: rk.public, rk: rk, epoch: t.epoch, usage: t.Profile().Key(rk.typ).Usage}, nil
		}
	}
	signers, err := t.c11.FindKeyPairs(ref.ID, []byte(ref.Label))
	if err != nil {
		return nil, t.wrap(op, err)
	}
	switch len(signers) {
	case 0:
		return nil, classErr(op, ErrNotFound, "no key pair %s", ref)
	case 1:
		k := t.newKey(ref, signers[0])
		k.usage = t.Profile().Key(keyTypeOf(k.pub)).Usage
		return k, nil
	default:
		return nil, classErr(op, nil, "%d key pairs share reference %s", len(signers), ref)
	}
}

// findEdKey returns ref's key pair if it is an Edwards key, nil if ref names
// no such pair (another key type, or nothing).
func (t *Token) findEdKey(ctx context.Context, ref KeyRef) (*edKey, error) {
	const op = "find key"
	var k *edKey
	err := t.withRawSession(ctx, op, func(sh pkcs11.SessionHandle) error {
		tmpl := append(refTemplate(ref), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards))
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
			return nil
		case len(privs) != 1 || len(pubs) != 1:
			return classErr(op, ErrNotFound, "%d private and %d public Edwards keys share reference %s", len(privs), len(pubs), ref)
		}
		p, pub, err := t.readEdPublic(sh, pubs[0], 0)
		if err != nil {
			return classErr(op, nil, "%s: %v", ref, err)
		}
		k = &edKey{params: p, priv: privs[0], pub: pubs[0], public: pub}
		return nil
	})
	return k, err
}

// DestroyKey destroys every object (private key, public key, certificate) with
// ref's CKA_ID and CKA_LABEL. ErrNotFound when nothing matched.
func (t *Token) DestroyKey(ctx context.Context, ref KeyRef) error {
	const op = "destroy key"
	if err := ref.check(op); err != nil {
		return err
	}
	return t.withRawSession(ctx, op, func(sh pkcs11.SessionHandle) error {
		hs, err := t.findObjects(sh, refTemplate(ref))
		if err != nil {
			return err
		}
		if len(hs) == 0 {
			return classErr(op, ErrNotFound, "no objects %s", ref)
		}
		destroyed := 0
		for _, h := range hs {
			// Read the object back before destroying it: a token whose
			// search returned an object the template does not describe
			// (SoftHSM 2.6's object store races under concurrent
			// changes) must not make csrd destroy another record's key.
			got, err := t.p11.GetAttributeValue(sh, h, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_ID, nil), pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil),
			})
			if err != nil {
				return err
			}
			if !ownedBy(got, ref) {
				t.log.Error().Str("key", ref.String()).Uint("handle", uint(h)).
					Str("object_id", hex.EncodeToString(got[0].Value)).Str("object_label", string(got[1].Value)).
					Uint("object_class", ulong(got[2].Value)).
					Msg("hsm: the token's search returned an object the template does not describe; it is left alone")
				continue
			}
			if err := t.p11.DestroyObject(sh, h); err != nil {
				return err
			}
			destroyed++
		}
		if destroyed == 0 {
			return classErr(op, ErrNotFound, "no objects %s (the token's search returned only others)", ref)
		}
		t.log.Debug().Str("key", ref.String()).Int("objects", destroyed).Msg("hsm: key destroyed by reference")
		return nil
	})
}

// KeyAttributes reads the attributes of ref's private key.
func (t *Token) KeyAttributes(ctx context.Context, ref KeyRef) (Attributes, error) {
	const op = "key attributes"
	if err := ref.check(op); err != nil {
		return Attributes{}, err
	}
	var a Attributes
	err := t.withRawSession(ctx, op, func(sh pkcs11.SessionHandle) error {
		tmpl := append(refTemplate(ref), pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY))
		hs, err := t.findObjects(sh, tmpl)
		if err != nil {
			return err
		}
		switch len(hs) {
		case 0:
			return classErr(op, ErrNotFound, "no private key %s", ref)
		case 1:
		default:
			return classErr(op, nil, "%d private keys share reference %s", len(hs), ref)
		}
		bools := []struct {
			typ uint
			dst *bool
		}{
			{pkcs11.CKA_SENSITIVE, &a.Sensitive},
			{pkcs11.CKA_EXTRACTABLE, &a.Extractable},
			{pkcs11.CKA_NEVER_EXTRACTABLE, &a.NeverExtractable},
			{pkcs11.CKA_ALWAYS_SENSITIVE, &a.AlwaysSensitive},
			{pkcs11.CKA_SIGN, &a.Sign},
			{pkcs11.CKA_DECRYPT, &a.Decrypt},
			{pkcs11.CKA_UNWRAP, &a.Unwrap},
			{pkcs11.CKA_DERIVE, &a.Derive},
			{pkcs11.CKA_TOKEN, &a.Token},
			{pkcs11.CKA_PRIVATE, &a.Private},
			{pkcs11.CKA_MODIFIABLE, &a.Modifiable},
		}
		q := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
			pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
		}
		for _, b := range bools {
			q = append(q, pkcs11.NewAttribute(b.typ, nil))
		}
		got, err := t.p11.GetAttributeValue(sh, hs[0], q)
		if err != nil {
			return err
		}
		a.KeyType = ulong(got[0].Value)
		a.Label = string(got[1].Value)
		a.ID = bytes.Clone(got[2].Value)
		for i, b := range bools {
			v := got[3+i].Value
			*b.dst = len(v) > 0 && v[0] != 0 // CK_BBOOL
		}
		a.Copyable, err = t.copyable(sh, hs[0])
		return err
	})
	return a, err
}

// copyable reads CKA_COPYABLE on its own: a token older than PKCS#11 2.40
// answers CKR_ATTRIBUTE_TYPE_INVALID, which would void a combined read, and
// on such a token any object may be copied.
func (t *Token) copyable(sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) (bool, error) {
	got, err := t.p11.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(ckaCopyable, nil)})
	switch {
	case isCKR(err, pkcs11.CKR_ATTRIBUTE_TYPE_INVALID):
		return true, nil
	case err != nil:
		return false, err
	}
	return len(got[0].Value) > 0 && got[0].Value[0] != 0, nil
}

// ListKeys returns the references of all private keys whose label starts with
// labelPrefix ("" lists all), sorted by label then ID.
func (t *Token) ListKeys(ctx context.Context, labelPrefix string) ([]KeyRef, error) {
	const op = "list keys"
	var refs []KeyRef
	err := t.withRawSession(ctx, op, func(sh pkcs11.SessionHandle) error {
		hs, err := t.findObjects(sh, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		})
		if err != nil {
			return err
		}
		for _, h := range hs {
			got, err := t.p11.GetAttributeValue(sh, h, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
			})
			if err != nil {
				return err
			}
			if label := string(got[1].Value); strings.HasPrefix(label, labelPrefix) {
				refs = append(refs, KeyRef{ID: bytes.Clone(got[0].Value), Label: label})
			}
		}
		return nil
	})
	slices.SortFunc(refs, func(a, b KeyRef) int {
		return cmp.Or(strings.Compare(a.Label, b.Label), bytes.Compare(a.ID, b.ID))
	})
	return refs, err
}

// CountObjects returns the number of token objects visible to the logged-in
// user (keys of every kind, certificates, data objects).
func (t *Token) CountObjects(ctx context.Context) (int, error) {
	var n int
	err := t.withRawSession(ctx, "count objects", func(sh pkcs11.SessionHandle) error {
		hs, err := t.findObjects(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true)})
		n = len(hs)
		return err
	})
	return n, err
}

// findObjects runs a complete C_FindObjects search on sh.
func (t *Token) findObjects(sh pkcs11.SessionHandle, tmpl []*pkcs11.Attribute) (hs []pkcs11.ObjectHandle, err error) {
	if err := t.p11.FindObjectsInit(sh, tmpl); err != nil {
		return nil, err
	}
	defer func() {
		if fErr := t.p11.FindObjectsFinal(sh); err == nil && fErr != nil {
			err = fErr
		}
	}()
	for {
		batch, _, err := t.p11.FindObjects(sh, 128)
		if err != nil {
			return nil, err
		}
		if len(batch) == 0 {
			return hs, nil
		}
		hs = append(hs, batch...)
	}
}

// ownedBy reports whether attrs (CKA_ID, CKA_LABEL, as read back) name ref.
func ownedBy(attrs []*pkcs11.Attribute, ref KeyRef) bool {
	return len(attrs) >= 2 && bytes.Equal(attrs[0].Value, ref.ID) && string(attrs[1].Value) == ref.Label
}

func refTemplate(ref KeyRef) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_ID, bytes.Clone(ref.ID)),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, ref.Label),
	}
}

// ulong decodes a CK_ULONG attribute value (native byte order, C long width).
func ulong(b []byte) uint {
	switch len(b) {
	case 8:
		return uint(binary.NativeEndian.Uint64(b))
	case 4:
		return uint(binary.NativeEndian.Uint32(b))
	}
	return 0
}
