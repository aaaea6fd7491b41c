package hsm

import (
	"bytes"
	"context"
	"encoding/asn1"
	"errors"
	"sync"

	"github.com/miekg/pkcs11"
)

// KEKLabel is the CKA_LABEL of the token-resident AES-256 key that seals
// secrets csrd must keep outside the token (ML-DSA seeds on tokens without
// ML-DSA). It is a secret-key object, so it never shows up among the private
// keys ListKeys returns, and it belongs to no record: destroying it would
// make every sealed key unusable. csrd creates it with CKA_DESTROYABLE
// false (PKCS#11 3.0; SoftHSM 2.6.1 honours it), so C_DestroyObject — an
// orphan sweep, a stray pkcs11-tool --delete-object — cannot remove it;
// only re-initialising the token does. The "v1" names the sealing format,
// not a rotation generation.
const KEKLabel = "csrd-kek-v1"

// ErrSealed: a sealed secret cannot be opened — malformed or tampered blob,
// wrong binding (associated data), or no matching key-encryption key on
// this token. The token never says which, and neither does hsm.
var ErrSealed = errors.New("hsm: sealed secret cannot be opened")

const (
	sealVersion = 1
	gcmIVSize   = 12 // 96-bit IV, the GCM default (NIST SP 800-38D 8.2.2)
	gcmTagBits  = 128
	kekIDSize   = 16
	sealAADTag  = "csrd-sealed-v1"
)

// SealBinding is what a sealed secret is bound to. It becomes the AES-GCM
// associated data, so a blob copied to another record, label or algorithm
// does not open.
type SealBinding struct {
	RecordID  int64
	Label     string // the record's key label
	Algorithm string // what the secret is, e.g. "ML-DSA-65"
}

// sealedBlob is the stored form:
//
//	SealedSecret ::= SEQUENCE {
//	  version    INTEGER (1),
//	  kekId      OCTET STRING, -- CKA_ID of the KEK that sealed it
//	  iv         OCTET STRING, -- 12 bytes
//	  ciphertext OCTET STRING  -- AES-256-GCM ciphertext || 16-byte tag
//	}
type sealedBlob struct {
	Version    int
	KEKID      []byte
	IV         []byte
	Ciphertext []byte
}

// kekCache holds the KEK handles: found (or created) once, then reused, so
// sealing costs no C_FindObjects on the request path.
type kekCache struct {
	mu    sync.Mutex
	cur   []byte                         // CKA_ID of the KEK new seals use; nil until first use
	byID  map[string]pkcs11.ObjectHandle // every KEK seen, by CKA_ID
	epoch uint64                         // the Token connection the handles belong to
}

// fresh drops handles of an earlier connection: object handles do not
// survive the C_Finalize of a reconnect (recover.go). Call with mu held,
// between begin and end.
func (c *kekCache) fresh(epoch uint64) {
	if c.epoch != epoch {
		c.cur, c.byID, c.epoch = nil, nil, epoch
	}
}

// sealingKEK returns the KEK new seals use, finding it on first use or
// creating it when the token has none.
//
// Creation is race-safe without a lock on the token: within the process the
// mutex serialises first use; across processes sharing the token each
// creator searches again after C_GenerateKey and everybody takes the KEK
// with the smallest CKA_ID (a losing creator's key stays unused: it cannot
// be destroyed). If two processes nevertheless settle on different KEKs
// (one finished before the other created), nothing breaks: every blob names
// its KEK's CKA_ID, and unsealing looks that one up.
func (t *Token) sealingKEK(sh pkcs11.SessionHandle) ([]byte, pkcs11.ObjectHandle, error) {
	t.kek.mu.Lock()
	defer t.kek.mu.Unlock()
	t.kek.fresh(t.epoch)
	if t.kek.cur != nil {
		return t.kek.cur, t.kek.byID[string(t.kek.cur)], nil
	}
	id, h, err := t.smallestKEK(sh)
	if err != nil {
		return nil, 0, err
	}
	if id == nil {
		if id, h, err = t.createKEK(sh); err != nil {
			return nil, 0, err
		}
	}
	t.kek.cur = id
	t.cacheKEK(id, h)
	return id, h, nil
}

func (t *Token) createKEK(sh pkcs11.SessionHandle) ([]byte, pkcs11.ObjectHandle, error) {
	own, err := t.p11.GenerateRandom(sh, kekIDSize)
	if err != nil {
		return nil, 0, err
	}
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}
	ownH, err := t.p11.GenerateKey(sh, mech, kekGenerateTemplate(own, true))
	if isCKR(err, pkcs11.CKR_ATTRIBUTE_TYPE_INVALID) {
		// A token older than PKCS#11 2.40: no CKA_DESTROYABLE or
		// CKA_COPYABLE, the KEK is as deletable as any object there.
		t.log.Warn().Str("label", KEKLabel).Msg("hsm: token has no CKA_DESTROYABLE; the sealing key can be deleted by anyone logged in")
		ownH, err = t.p11.GenerateKey(sh, mech, kekGenerateTemplate(own, false))
	}
	if err != nil {
		return nil, 0, err
	}
	id, h, err := t.smallestKEK(sh)
	if err != nil {
		return nil, 0, err
	}
	if !bytes.Equal(id, own) {
		// Another process created one at the same time and won; ours has
		// sealed nothing, but being indestructible it stays, unused.
		t.log.Warn().Str("label", KEKLabel).Msg("hsm: another process created a sealing key at the same time; using the one with the smaller CKA_ID")
	}
	_ = ownH
	t.log.Info().Str("label", KEKLabel).Msg("hsm: sealing key created")
	return id, h, nil
}

// smallestKEK searches the token for csrd KEKs and returns the one with the
// smallest CKA_ID (nil when there is none).
func (t *Token) smallestKEK(sh pkcs11.SessionHandle) ([]byte, pkcs11.ObjectHandle, error) {
	hs, err := t.findObjects(sh, kekTemplate(nil))
	if err != nil {
		return nil, 0, err
	}
	var (
		best  []byte
		bestH pkcs11.ObjectHandle
	)
	for _, h := range hs {
		got, err := t.p11.GetAttributeValue(sh, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, nil),
			pkcs11.NewAttribute(pkcs11.CKA_NEVER_EXTRACTABLE, nil),
		})
		if err != nil {
			return nil, 0, err
		}
		id, vlen, never := got[0].Value, ulong(got[1].Value), got[2].Value
		if len(id) == 0 || vlen != 32 || len(never) == 0 || never[0] == 0 {
			continue // not ours, or once extractable: never trusted with a seal
		}
		t.cacheKEK(id, h)
		if best == nil || bytes.Compare(id, best) < 0 {
			best, bestH = bytes.Clone(id), h
		}
	}
	return best, bestH, nil
}

func (t *Token) cacheKEK(id []byte, h pkcs11.ObjectHandle) {
	if t.kek.byID == nil {
		t.kek.byID = make(map[string]pkcs11.ObjectHandle)
	}
	t.kek.byID[string(id)] = h
}

// kekByID returns the handle of the KEK with CKA_ID id, searching once.
func (t *Token) kekByID(sh pkcs11.SessionHandle, id []byte) (pkcs11.ObjectHandle, bool, error) {
	t.kek.mu.Lock()
	defer t.kek.mu.Unlock()
	t.kek.fresh(t.epoch)
	if h, ok := t.kek.byID[string(id)]; ok {
		return h, true, nil
	}
	if _, _, err := t.smallestKEK(sh); err != nil {
		return 0, false, err
	}
	h, ok := t.kek.byID[string(id)]
	return h, ok, nil
}

// forgetKEK drops a cached handle the token says is gone, so the next call
// searches again instead of failing forever.
func (t *Token) forgetKEK(id []byte) {
	t.kek.mu.Lock()
	defer t.kek.mu.Unlock()
	delete(t.kek.byID, string(id))
	if bytes.Equal(t.kek.cur, id) {
		t.kek.cur = nil
	}
}

// sealAAD is the associated data: DER SEQUENCE { "csrd-sealed-v1", kekId,
// recordId, label, algorithm } — unambiguous, so no two bindings collide.
func sealAAD(kekID []byte, b SealBinding) ([]byte, error) {
	return asn1.Marshal(struct {
		Tag       string `asn1:"utf8"`
		KEKID     []byte
		RecordID  int64
		Label     string `asn1:"utf8"`
		Algorithm string `asn1:"utf8"`
	}{sealAADTag, kekID, b.RecordID, b.Label, b.Algorithm})
}

// seal encrypts plaintext with AES-256-GCM inside the token (C_Encrypt)
// under the KEK, bound to b. The caller wipes plaintext.
func (t *Token) seal(ctx context.Context, plaintext []byte, b SealBinding) ([]byte, error) {
	const op = "seal"
	if b.RecordID <= 0 || b.Label == "" || b.Algorithm == "" {
		return nil, classErr(op, nil, "incomplete binding %+v", b)
	}
	var blob []byte
	err := t.withWorkSession(ctx, op, func(sh pkcs11.SessionHandle) error {
		kekID, kek, err := t.sealingKEK(sh)
		if err != nil {
			return err
		}
		aad, err := sealAAD(kekID, b)
		if err != nil {
			return err
		}
		iv, err := t.p11.GenerateRandom(sh, gcmIVSize)
		if err != nil {
			return err
		}
		params := pkcs11.NewGCMParams(iv, aad, gcmTagBits)
		defer params.Free()
		if err := t.p11.EncryptInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, kek); err != nil {
			if isCKR(err, pkcs11.CKR_KEY_HANDLE_INVALID) || isCKR(err, pkcs11.CKR_OBJECT_HANDLE_INVALID) {
				t.forgetKEK(kekID)
			}
			return err
		}
		ct, err := t.p11.Encrypt(sh, plaintext)
		if err != nil {
			return err
		}
		// Some tokens choose the IV themselves and write it back.
		if got := params.IV(); len(got) == gcmIVSize {
			iv = got
		}
		if len(ct) != len(plaintext)+gcmTagBits/8 {
			return classErr(op, nil, "token returned %d bytes of GCM output for %d bytes", len(ct), len(plaintext))
		}
		blob, err = asn1.Marshal(sealedBlob{Version: sealVersion, KEKID: kekID, IV: iv, Ciphertext: ct})
		return err
	})
	return blob, err
}

// unseal opens a blob made by seal with the same binding. Every way it can
// fail to open — malformed, tampered, wrong binding, wrong or missing KEK —
// is ErrSealed; token trouble (sessions, login) keeps its own class.
func (t *Token) unseal(ctx context.Context, blob []byte, b SealBinding) ([]byte, error) {
	const op = "unseal"
	var sb sealedBlob
	rest, err := asn1.Unmarshal(blob, &sb)
	switch {
	case err != nil, len(rest) != 0:
		return nil, classErr(op, ErrSealed, "not a sealed secret")
	case sb.Version != sealVersion:
		return nil, classErr(op, ErrSealed, "sealed secret version %d", sb.Version)
	case len(sb.KEKID) == 0 || len(sb.IV) != gcmIVSize || len(sb.Ciphertext) <= gcmTagBits/8:
		return nil, classErr(op, ErrSealed, "sealed secret has bad field sizes")
	}
	aad, err := sealAAD(sb.KEKID, b)
	if err != nil {
		return nil, classErr(op, ErrSealed, "binding: %v", err)
	}
	var pt []byte
	err = t.withWorkSession(ctx, op, func(sh pkcs11.SessionHandle) error {
		kek, ok, err := t.kekByID(sh, sb.KEKID)
		if err != nil {
			return err
		}
		if !ok {
			return classErr(op, ErrSealed, "no sealing key with this blob's id on token %q", t.label)
		}
		params := pkcs11.NewGCMParams(sb.IV, aad, gcmTagBits)
		defer params.Free()
		if err := t.p11.DecryptInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, kek); err != nil {
			if isCKR(err, pkcs11.CKR_KEY_HANDLE_INVALID) || isCKR(err, pkcs11.CKR_OBJECT_HANDLE_INVALID) {
				t.forgetKEK(sb.KEKID)
			}
			return err
		}
		pt, err = t.p11.Decrypt(sh, sb.Ciphertext)
		if err != nil {
			return authFailure(op, err)
		}
		return nil
	})
	return pt, err
}

// authFailure classifies a failed C_Decrypt under GCM: tokens report a tag
// mismatch as CKR_ENCRYPTED_DATA_INVALID, CKR_AEAD_DECRYPT_FAILED (3.0) or,
// like SoftHSM 2.6.1, CKR_GENERAL_ERROR. Only session and login trouble
// keep their class; anything else means the blob did not authenticate.
func authFailure(op string, err error) error {
	w := wrap(op, err)
	var e *Error
	if !errors.As(w, &e) || errors.Is(e, ErrLogin) {
		return w
	}
	switch e.CKR {
	case pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_DEVICE_REMOVED,
		pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_HOST_MEMORY, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED:
		return w
	}
	sealed := *e // a copy: an *Error found inside w is not this call's to change
	sealed.Err = ErrSealed
	return &sealed
}
