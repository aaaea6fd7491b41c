package lifecycle_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cloudflare/circl/sign"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/store"
)

// fakeToken is a lifecycle.Token in memory that fails on demand. It keeps
// the objects it holds (label, CKA_ID, class), so a test can check that no
// key is left without a record. Keys are software keys: the fake proves
// lifecycle's ordering and clean-up, never PKCS#11 behaviour, which the
// SoftHSM tests prove.
type fakeToken struct {
	label, serial string
	storage       hsm.AltStorage // where ML-DSA alternative keys live

	mu        sync.Mutex
	objects   map[string]*fakeObjects // by label and CKA_ID
	faults    map[op][]error          // the next calls of op fail with these, in order
	broken    map[op]error            // then every call of op fails with this, until heal
	ids       int
	down      error         // Healthy's answer
	connected chan struct{} // closed once connected
}

// op names a fakeToken call a fault can be injected into. opGeneratePartial
// fails GenerateKeyPair after the pair exists, as a token may.
type op string

const (
	opNewKeyID        op = "NewKeyID"
	opGenerate        op = "GenerateKeyPair"
	opGeneratePartial op = "GenerateKeyPair after creating the pair"
	opSign            op = "Sign"
	opDestroy         op = "DestroyKey"
	opPutCertificate  op = "PutCertificate"
	opListObjects     op = "ListObjects"
	opObjectsOf       op = "ObjectsOf"
	opGenerateMLDSA   op = "GenerateMLDSA"
	opSealMLDSA       op = "NewSealedMLDSA"
	opPing            op = "Ping"
)

type fakeObjects struct {
	ref     hsm.KeyRef
	classes []hsm.ObjectClass
	cert    []byte // DER of the certificate object, if any
}

func newFakeToken(label string) *fakeToken {
	f := &fakeToken{
		label: label, serial: "fake-" + label, storage: hsm.AltStorageSealed,
		objects: map[string]*fakeObjects{}, faults: map[op][]error{}, broken: map[op]error{},
		connected: make(chan struct{}),
	}
	close(f.connected)
	return f
}

// fail makes the next len(errs) calls of o fail with errs in order (a nil
// entry lets that call through).
func (f *fakeToken) fail(o op, errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[o] = append(f.faults[o], errs...)
}

// breakOp makes every call of o fail with err, once the queued faults
// are used up, until heal.
func (f *fakeToken) breakOp(o op, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.broken[o] = err
}

func (f *fakeToken) heal(o op) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.broken, o)
}

// failing returns the error for this call of o: the next queued one, else
// the standing one, else nil.
func (f *fakeToken) failing(o op) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.faults[o]
	if len(q) == 0 {
		return f.broken[o]
	}
	f.faults[o] = q[1:]
	return q[0]
}

// tokenErr is an error as hsm reports a token in trouble (it takes the
// token out of the pool's rotation).
func tokenErr(o op) error {
	return &hsm.Error{Op: string(o), Err: hsm.ErrUnavailable}
}

func objectsKey(ref hsm.KeyRef) string { return ref.Label + "\x00" + string(ref.ID) }

func (f *fakeToken) put(ref hsm.KeyRef, classes ...hsm.ObjectClass) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := objectsKey(ref)
	g := f.objects[k]
	if g == nil {
		g = &fakeObjects{ref: hsm.KeyRef{ID: bytes.Clone(ref.ID), Label: ref.Label}}
		f.objects[k] = g
	}
	g.classes = append(g.classes, classes...)
}

// groups returns the object groups the token holds, sorted by label.
func (f *fakeToken) groups() []fakeObjects {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeObjects
	for _, g := range f.objects {
		out = append(out, fakeObjects{ref: g.ref, classes: slices.Clone(g.classes), cert: g.cert})
	}
	slices.SortFunc(out, func(a, b fakeObjects) int { return strings.Compare(a.ref.Label, b.ref.Label) })
	return out
}

func (f *fakeToken) Label() string { return f.label }

// Profile is nil: the fake has no PKCS#11 answers to record.
func (f *fakeToken) Profile() *hsm.Profile { return nil }

func (f *fakeToken) Serial() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.serial
}

func (f *fakeToken) Healthy() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.down
}

func (f *fakeToken) Connected() <-chan struct{} { return f.connected }

func (f *fakeToken) Ping(context.Context) error {
	if err := f.failing(opPing); err != nil {
		return err
	}
	return f.Healthy()
}

// newWaitingToken is a fake token that has not connected yet: Healthy says
// why (down) until connect.
func newWaitingToken(label string, down error) *fakeToken {
	f := newFakeToken(label)
	f.serial, f.down, f.connected = "", down, make(chan struct{})
	return f
}

// connect makes a waiting token connected, with its serial.
func (f *fakeToken) connect() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.serial, f.down = "fake-"+f.label, nil
	close(f.connected)
}

func (f *fakeToken) NewKeyID(context.Context) ([]byte, error) {
	if err := f.failing(opNewKeyID); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids++
	return fmt.Appendf(nil, "%s-%d", f.label, f.ids), nil
}

// Usage is what a real token's keys get where they can be restricted.
func (f *fakeToken) Usage(hsm.KeySpec) hsm.Usage { return hsm.Usage{Sign: true} }

func (f *fakeToken) CanGenerate(spec hsm.KeySpec) error {
	if spec.Type != hsm.KeyECDSA && spec.Type != hsm.KeyEd25519 {
		return &hsm.Error{Op: "can generate", Err: hsm.ErrUnsupported}
	}
	return nil
}

func (f *fakeToken) GenerateKeyPair(_ context.Context, spec hsm.KeySpec, ref hsm.KeyRef) (crypto.Signer, error) {
	if err := f.failing(opGenerate); err != nil {
		return nil, err
	}
	var (
		priv crypto.Signer
		err  error
	)
	if spec.Type == hsm.KeyEd25519 {
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	} else {
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, err
	}
	f.put(ref, hsm.ClassPrivateKey, hsm.ClassPublicKey)
	if err := f.failing(opGeneratePartial); err != nil {
		return nil, err
	}
	return &fakeKey{Signer: priv, tok: f}, nil
}

// fakeKey signs in software, failing when the token is told to.
type fakeKey struct {
	crypto.Signer
	tok *fakeToken
}

func (k *fakeKey) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if err := k.tok.failing(opSign); err != nil {
		return nil, err
	}
	return k.Signer.Sign(r, digest, opts)
}

func (f *fakeToken) DestroyKey(_ context.Context, ref hsm.KeyRef) error {
	if err := f.failing(opDestroy); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k := objectsKey(ref)
	if f.objects[k] == nil {
		return &hsm.Error{Op: string(opDestroy), Err: hsm.ErrNotFound}
	}
	delete(f.objects, k)
	return nil
}

func (f *fakeToken) PutCertificate(_ context.Context, ref hsm.KeyRef, cert *x509.Certificate) (bool, error) {
	if err := f.failing(opPutCertificate); err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.objects[objectsKey(ref)]
	switch {
	case g != nil && g.cert != nil && bytes.Equal(g.cert, cert.Raw):
		return false, nil
	case g != nil && g.cert != nil:
		return false, hsm.ErrCertificateMismatch
	case g == nil:
		g = &fakeObjects{ref: ref}
		f.objects[objectsKey(ref)] = g
	}
	g.cert = cert.Raw
	g.classes = append(g.classes, hsm.ClassCertificate)
	return true, nil
}

func (f *fakeToken) ListObjects(_ context.Context, prefix string) ([]hsm.Object, error) {
	if err := f.failing(opListObjects); err != nil {
		return nil, err
	}
	var out []hsm.Object
	for _, g := range f.groups() {
		if strings.HasPrefix(g.ref.Label, prefix) {
			for _, c := range g.classes {
				out = append(out, hsm.Object{Class: c, Ref: g.ref})
			}
		}
	}
	return out, nil
}

func (f *fakeToken) ObjectsOf(_ context.Context, ref hsm.KeyRef) ([]hsm.ObjectClass, error) {
	if err := f.failing(opObjectsOf); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if g := f.objects[objectsKey(ref)]; g != nil {
		return slices.Clone(g.classes), nil
	}
	return nil, nil
}

func (f *fakeToken) MLDSAStorage() hsm.AltStorage { return f.storage }

var mldsaSchemes = map[hsm.MLDSA]sign.Scheme{
	hsm.MLDSA44: mldsa44.Scheme(), hsm.MLDSA65: mldsa65.Scheme(), hsm.MLDSA87: mldsa87.Scheme(),
}

func (f *fakeToken) GenerateMLDSA(_ context.Context, set hsm.MLDSA, ref hsm.KeyRef) (lifecycle.AltKey, error) {
	if err := f.failing(opGenerateMLDSA); err != nil {
		return nil, err
	}
	_, priv, err := mldsaSchemes[set].GenerateKey()
	if err != nil {
		return nil, err
	}
	f.put(ref, hsm.ClassPrivateKey, hsm.ClassPublicKey)
	return &fakeAltKey{Signer: priv, storage: hsm.AltStorageToken}, nil
}

func (f *fakeToken) NewSealedMLDSA(_ context.Context, set hsm.MLDSA, b hsm.SealBinding) (lifecycle.AltKey, error) {
	if err := f.failing(opSealMLDSA); err != nil {
		return nil, err
	}
	_, priv, err := mldsaSchemes[set].GenerateKey()
	if err != nil {
		return nil, err
	}
	return &fakeAltKey{Signer: priv, storage: hsm.AltStorageSealed, seed: fmt.Appendf(nil, "sealed for %d/%s", b.RecordID, b.Label)}, nil
}

// fakeAltKey is an ML-DSA key in software.
type fakeAltKey struct {
	crypto.Signer
	storage hsm.AltStorage
	seed    []byte
	mu      sync.Mutex
	wiped   bool
}

func (k *fakeAltKey) Storage() hsm.AltStorage { return k.storage }
func (k *fakeAltKey) SealedSeed() []byte      { return bytes.Clone(k.seed) }

func (k *fakeAltKey) Wipe() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.wiped = true
}

func (k *fakeAltKey) Sign(r io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	k.mu.Lock()
	wiped := k.wiped
	k.mu.Unlock()
	if wiped {
		return nil, &hsm.Error{Op: "sign", Err: hsm.ErrNotFound}
	}
	return k.Signer.Sign(r, msg, opts)
}

// noKeyWithoutRecord fails t unless every object group on tok belongs to a
// live record of db (generating, pending or married) that names it: the
// invariant lifecycle keeps whatever fails.
func noKeyWithoutRecord(t *testing.T, tok *fakeToken, db *store.Store) {
	t.Helper()
	for _, g := range tok.groups() {
		id, alt, ok := lifecycle.ParseLabel(g.ref.Label)
		if !ok {
			t.Errorf("token %s holds %s, which is no record's label", tok.label, g.ref)
			continue
		}
		rec, err := db.Get(context.Background(), id)
		if err != nil {
			t.Errorf("token %s holds %s, but record %d: %v", tok.label, g.ref, id, err)
			continue
		}
		want := rec.KeyID
		if alt {
			want = rec.AltKeyID
		}
		switch {
		case rec.State != store.StateGenerating && rec.State != store.StatePending && rec.State != store.StateMarried:
			t.Errorf("token %s holds %s of record %d, which is %s", tok.label, g.ref, id, rec.State)
		case !bytes.Equal(want, g.ref.ID) || rec.TokenLabel != tok.label:
			t.Errorf("token %s holds %s, but record %d names %s/%x", tok.label, g.ref, id, rec.TokenLabel, want)
		}
	}
}
