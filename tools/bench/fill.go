package bench

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"
	"sync/atomic"

	"github.com/miekg/pkcs11"

	"github.com/csrd/csrd/csr"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

// fill brings the token up to n csrd P-256 keys, each with a pending record
// in db, faster than csrd can: a token key pair costs SoftHSM ~4x more when
// generated on the token than when generated as session objects and copied
// to it (C_CopyObject with CKA_TOKEN=true). The result is what csrd would
// have made — csrd's templates, label csrd-<id>, CKA_ID from the record, a
// CSR signed by the token key, the policy decision — except that the keys
// are copies (CKA_LOCAL false) rather than generated in place, which makes no
// difference to what the benchmark then measures (object count).
//
// It follows csrd's crash-safe order (record, key, CSR, complete), so an
// interrupted fill leaves records that csrd's start-up reconciliation fixes.
func (m *rawModule) fill(ctx context.Context, db *store.Store, label string, n, workers int) (int, error) {
	have, err := db.CountByState(ctx)
	if err != nil {
		return 0, err
	}
	todo := n - have[store.StatePending]
	if todo <= 0 {
		return 0, nil
	}
	slot := m.slots[label]
	ti, err := m.p.GetTokenInfo(slot)
	if err != nil {
		return 0, fmt.Errorf("bench: C_GetTokenInfo: %w", err)
	}
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := m.fillWorker(ctx, db, slot, label, ti.SerialNumber, func() bool { return next.Add(1) <= int64(todo) })
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return todo, errors.Join(append(errs, ctx.Err())...)
}

// fillWorker adds keys in a session of its own while more is true. A
// session that will not close is reported with the worker's outcome: the
// keys it copied are on the token, but a token that fails there is one the
// figures measured after the fill cannot trust.
func (m *rawModule) fillWorker(ctx context.Context, db *store.Store, slot uint, label, serial string, more func() bool) (err error) {
	sh, err := m.p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := m.p.CloseSession(sh); cerr != nil {
			err = errors.Join(err, fmt.Errorf("bench: fill: C_CloseSession: %w", cerr))
		}
	}()
	for ctx.Err() == nil && more() {
		if err := m.fillOne(ctx, db, sh, label, serial); err != nil {
			return err
		}
	}
	return nil
}

func (m *rawModule) fillOne(ctx context.Context, db *store.Store, sh pkcs11.SessionHandle, label, serial string) error {
	host := fmt.Sprintf("fill-%d.example.com", m.seq.Add(1))
	subject, err := csr.ParseDN("CN=" + host + ",O=csrd bench,C=US")
	if err != nil {
		return err
	}
	sans, err := csr.ParseSANs(map[string][]string{"dns": {host}})
	if err != nil {
		return err
	}
	dec, err := policy.Default().Decide(policy.Request{
		Key: policy.KeyRequest{KeyType: "ECC", KeyLength: 256}, Subject: subject, SANs: sans,
	})
	if err != nil {
		return err
	}
	decision, err := json.Marshal(dec)
	if err != nil {
		return err
	}
	keyID := make([]byte, 16)
	if _, err := rand.Read(keyID); err != nil {
		return err
	}
	rec := &store.KeyRecord{
		State: store.StateGenerating, KeyID: keyID, TokenLabel: label, TokenSerial: serial,
		KeyType: string(dec.Key.Algorithm), KeySize: dec.Key.Bits, Curve: dec.Key.Curve,
		Subject: subject.String(), SANs: sans.Strings(), Decision: decision,
	}
	id, err := db.BeginKey(ctx, rec, lifecycle.LabelPrefix)
	if err != nil {
		return err
	}
	spec := hsm.KeySpec{Type: hsm.KeyECDSA, Bits: 256, Curve: elliptic.P256()}
	t, err := hsm.GenerateTemplates(spec, hsm.KeyRef{ID: keyID, Label: rec.KeyLabel})
	if err != nil {
		return err
	}
	session := func(as []*pkcs11.Attribute) []*pkcs11.Attribute {
		out := make([]*pkcs11.Attribute, 0, len(as))
		for _, a := range as {
			if a.Type == pkcs11.CKA_TOKEN {
				a = pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false)
			}
			out = append(out, a)
		}
		return out
	}
	spub, spriv, err := m.p.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(t.Mechanism, nil)},
		session(t.Public), session(t.Private))
	if err != nil {
		return fmt.Errorf("bench: fill: C_GenerateKeyPair: %w", err)
	}
	toToken := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true)}
	pub, err := m.p.CopyObject(sh, spub, toToken)
	if err != nil {
		return fmt.Errorf("bench: fill: C_CopyObject: %w", err)
	}
	priv, err := m.p.CopyObject(sh, spriv, toToken)
	if err != nil {
		return fmt.Errorf("bench: fill: C_CopyObject: %w", err)
	}
	_ = m.p.DestroyObject(sh, spub)
	_ = m.p.DestroyObject(sh, spriv)

	signer, err := m.ecSigner(sh, pub, priv)
	if err != nil {
		return err
	}
	der, err := csr.Build(rand.Reader, &csr.Request{Subject: subject, SANs: sans}, signer)
	if err != nil {
		return err
	}
	spki, err := csr.SPKISHA256(signer.Public())
	if err != nil {
		return err
	}
	return db.CompleteKey(ctx, id, csr.PEM(der), spki, nil)
}

// rawECSigner is a crypto.Signer on a raw P-256 private key handle.
type rawECSigner struct {
	m    *rawModule
	sh   pkcs11.SessionHandle
	priv pkcs11.ObjectHandle
	pub  *ecdsa.PublicKey
}

func (m *rawModule) ecSigner(sh pkcs11.SessionHandle, pub, priv pkcs11.ObjectHandle) (*rawECSigner, error) {
	attrs, err := m.p.GetAttributeValue(sh, pub, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	if err != nil {
		return nil, fmt.Errorf("bench: fill: C_GetAttributeValue: %w", err)
	}
	var point []byte
	if _, err := asn1.Unmarshal(attrs[0].Value, &point); err != nil {
		return nil, fmt.Errorf("bench: fill: CKA_EC_POINT: %w", err)
	}
	pk, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return nil, fmt.Errorf("bench: fill: CKA_EC_POINT is not a P-256 point: %w", err)
	}
	return &rawECSigner{m: m, sh: sh, priv: priv, pub: pk}, nil
}

func (s *rawECSigner) Public() crypto.PublicKey { return s.pub }

func (s *rawECSigner) Sign(_ io.Reader, digest []byte, _ crypto.SignerOpts) ([]byte, error) {
	if err := s.m.p.SignInit(s.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, s.priv); err != nil {
		return nil, err
	}
	rs, err := s.m.p.Sign(s.sh, digest)
	if err != nil {
		return nil, err
	}
	half := len(rs) / 2
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(rs[:half]), new(big.Int).SetBytes(rs[half:])})
}
