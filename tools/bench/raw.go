package bench

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/miekg/pkcs11"

	"github.com/csrd/csrd/hsm"
)

// rawModule is this process's own PKCS#11 handle on the module, logged in to
// each benchmark token. It deliberately does not use package hsm's Token: the
// raw loop is the yardstick, so it talks to the module directly and borrows
// only csrd's key templates (hsm.GenerateTemplates).
type rawModule struct {
	p     *pkcs11.Ctx
	slots map[string]uint // token label -> slot
	login []pkcs11.SessionHandle
	seq   atomic.Int64

	mu   sync.Mutex
	left []rawKey // key pairs the raw loop made and has not destroyed yet
	// shapes are the template shapes the token took, by key type: the
	// full one until the token refuses it, then the one csrd's profile
	// falls back to (see hsm's trial rounds).
	shapes map[hsm.KeyType]hsm.Template

	// perLogin is, for a module that keeps every key it used loaded until
	// logout (tpm2-pkcs11), the keys the loop lets it load between two
	// logins, as csrd does (hsm.ModuleKeysPerLogin; 0: none). Operations
	// hold relog's read lock; the one that reaches the bound takes the
	// write lock, logs out and in again and starts the count anew.
	perLogin int64
	relog    sync.RWMutex
	loaded   atomic.Int64
	pins     map[uint]string // slot -> PIN, for the re-login
}

func openRawModule(module string) (*rawModule, error) {
	p := pkcs11.New(module)
	if p == nil {
		return nil, fmt.Errorf("bench: cannot load %s", module)
	}
	if err := p.Initialize(); err != nil {
		p.Destroy()
		return nil, fmt.Errorf("bench: C_Initialize: %w", err)
	}
	info, err := p.GetInfo()
	if err != nil {
		_ = p.Finalize()
		p.Destroy()
		return nil, fmt.Errorf("bench: C_GetInfo: %w", err)
	}
	return &rawModule{p: p, slots: map[string]uint{}, shapes: map[hsm.KeyType]hsm.Template{},
		perLogin: int64(hsm.ModuleKeysPerLogin(info)), pins: map[uint]string{}}, nil
}

// admit counts one key the module will load and, once the bound is
// reached, logs out and in again first (as csrd does). The caller holds
// the read lock until its operation ends (release).
func (m *rawModule) admit(slot uint) error {
	if m.perLogin == 0 {
		return nil
	}
	for {
		m.relog.RLock()
		if m.loaded.Add(1) <= m.perLogin {
			return nil
		}
		m.relog.RUnlock()
		m.relog.Lock()
		var err error
		if m.loaded.Load() > m.perLogin { // nobody re-logged in meanwhile
			err = m.relogin(slot)
			m.loaded.Store(0)
		}
		m.relog.Unlock()
		if err != nil {
			return err
		}
	}
}

func (m *rawModule) release() {
	if m.perLogin != 0 {
		m.relog.RUnlock()
	}
}

// relogin logs out of slot's token and in again; the write lock is held.
func (m *rawModule) relogin(slot uint) error {
	sh, err := m.p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		return fmt.Errorf("bench: C_OpenSession: %w", err)
	}
	defer func() { _ = m.p.CloseSession(sh) }()
	if err := m.p.Logout(sh); err != nil {
		return fmt.Errorf("bench: C_Logout: %w", err)
	}
	if err := m.p.Login(sh, pkcs11.CKU_USER, m.pins[slot]); err != nil {
		return fmt.Errorf("bench: C_Login: %w", err)
	}
	return nil
}

// loginToken logs in to the token labelled label; the session stays open so
// the login lasts for the run.
func (m *rawModule) loginToken(label, pin string) error {
	slots, err := m.p.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("bench: C_GetSlotList: %w", err)
	}
	for _, s := range slots {
		ti, err := m.p.GetTokenInfo(s)
		if err != nil || ti.Label != label {
			continue
		}
		sh, err := m.p.OpenSession(s, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			return fmt.Errorf("bench: C_OpenSession: %w", err)
		}
		if err := m.p.Login(sh, pkcs11.CKU_USER, pin); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
			return fmt.Errorf("bench: C_Login %s: %w", label, err)
		}
		m.slots[label] = s
		m.pins[s] = pin
		m.login = append(m.login, sh)
		return nil
	}
	return fmt.Errorf("bench: no token labelled %q", label)
}

func (m *rawModule) close() {
	for _, sh := range m.login {
		_ = m.p.CloseSession(sh)
	}
	_ = m.p.Finalize()
	m.p.Destroy()
}

// rawKey is a key pair one raw operation left on the token.
type rawKey struct {
	slot      uint
	pub, priv pkcs11.ObjectHandle
}

// rawWorker is one session of the raw loop.
type rawWorker struct {
	m    *rawModule
	slot uint
	sh   pkcs11.SessionHandle
	keys []rawKey
}

func (m *rawModule) worker(label string) (*rawWorker, error) {
	slot, ok := m.slots[label]
	if !ok {
		return nil, fmt.Errorf("bench: not logged in to %q", label)
	}
	sh, err := m.p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return nil, fmt.Errorf("bench: C_OpenSession: %w", err)
	}
	return &rawWorker{m: m, slot: slot, sh: sh}, nil
}

// generate is the raw loop's one operation, what csrd asks of the token per
// CSR: generate a token key pair with csrd's templates, read the public key,
// sign one digest (or, for EdDSA, a message of a CSR's size).
func (w *rawWorker) generate(a alg) error {
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	ref := hsm.KeyRef{ID: id, Label: fmt.Sprintf("bench-raw-%d", w.m.seq.Add(1))}
	if err := w.m.admit(w.slot); err != nil {
		return err
	}
	defer w.m.release()
	shape := w.m.shape(a.spec.Type)
	pub, priv, err := w.generatePair(a, ref, shape)
	for _, next := range hsm.TemplateShapes() {
		if err == nil {
			break
		}
		if next > shape {
			shape = next
			if pub, priv, err = w.generatePair(a, ref, shape); err == nil {
				w.m.setShape(a.spec.Type, shape)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("bench: C_GenerateKeyPair: %w", err)
	}
	w.keys = append(w.keys, rawKey{slot: w.slot, pub: pub, priv: priv})
	if _, err := w.m.p.GetAttributeValue(w.sh, pub, a.publicAttrs()); err != nil {
		return fmt.Errorf("bench: C_GetAttributeValue: %w", err)
	}
	mech, data := a.signInput(ref.Label)
	if !shape.PublicUsage() && a.spec.Type == hsm.KeyRSA {
		// As csrd signs keys of that shape: the token hashes the message.
		mech, data = pkcs11.CKM_SHA256_RSA_PKCS, []byte(ref.Label)
	}
	if err := w.m.p.SignInit(w.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, priv); err != nil {
		return fmt.Errorf("bench: C_SignInit: %w", err)
	}
	if _, err := w.m.p.Sign(w.sh, data); err != nil {
		return fmt.Errorf("bench: C_Sign: %w", err)
	}
	return nil
}

func (w *rawWorker) generatePair(a alg, ref hsm.KeyRef, shape hsm.Template) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error) {
	t, err := hsm.ShapeTemplates(a.spec, ref, shape)
	if err != nil {
		return 0, 0, err
	}
	return w.m.p.GenerateKeyPair(w.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(t.Mechanism, nil)}, t.Public, t.Private)
}

func (m *rawModule) shape(t hsm.KeyType) hsm.Template {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.shapes[t]; ok {
		return s
	}
	return hsm.TemplateFull
}

func (m *rawModule) setShape(t hsm.KeyType, s hsm.Template) {
	m.mu.Lock()
	m.shapes[t] = s
	m.mu.Unlock()
}

// keep records the worker's key pairs as left on the token. They are not
// destroyed: removing object files makes the file system's next inode
// allocations slower for a while (ext4 skips recently freed inodes, which
// shows in perf as recently_deleted), so whichever side ran next would pay
// for it; and SoftHSM rescans the token directory after each destroy. The
// report says how many there are next to csrd's own keys.
func (w *rawWorker) keep() {
	w.m.mu.Lock()
	w.m.left = append(w.m.left, w.keys...)
	w.m.mu.Unlock()
	w.keys = nil
}

// rawKeys is how many raw key pairs are on the tokens now.
func (m *rawModule) rawKeys() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.left)
}

func (w *rawWorker) close() { _ = w.m.p.CloseSession(w.sh) }

// runRaw runs the raw loop with c sessions spread round-robin over labels.
func (m *rawModule) runRaw(ctx context.Context, a alg, labels []string, c int, d durations, mark func(bool)) (Measure, error) {
	ws := make([]*rawWorker, c)
	for i := range ws {
		w, err := m.worker(labels[i%len(labels)])
		if err != nil {
			return Measure{}, err
		}
		ws[i] = w
	}
	win := d.loop(c, func(_ context.Context, i, _ int) error { return ws[i].generate(a) }, mark).Run(ctx)
	for _, w := range ws {
		w.keep()
		w.close()
	}
	return measure(win), nil
}

// digestInfoSHA256 is the DER DigestInfo prefix crypto11 (and so csrd) puts
// before a SHA-256 digest for CKM_RSA_PKCS.
var digestInfoSHA256 = []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}

var _ = crypto.SHA256 // the hash csrd's CSRs use for RSA-2048 and P-256

func sha256Of(s string) []byte { d := sha256.Sum256([]byte(s)); return d[:] }
