package hsm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
	"github.com/rs/zerolog"
)

// rawSessions bounds the maintenance sessions hsm opens on its raw handle
// (find, attribute reads, destroy by reference, ping) on top of crypto11's
// MaxSessions. Cryptographic work on the raw handle (EdDSA, ML-DSA, sealing)
// has its own MaxSessions-1 slots, so a burst of Ed25519 requests never
// makes a readiness ping wait.
const rawSessions = 2

// Token is the process's connection to one PKCS#11 token: a crypto11 context for
// generation and signing, and a raw miekg/pkcs11 handle on the same (already
// initialised and logged-in) module for everything crypto11 cannot do. Open it
// once in main and Close it last. Its methods are safe for concurrent use.
type Token struct {
	log     zerolog.Logger
	cfg     Config // kept for re-login after a session loss (see recover.go)
	label   string
	wait    time.Duration // PoolWaitTimeout, also bounds waiting for a raw session
	rawSem  chan struct{} // maintenance sessions on the raw handle
	workSem chan struct{} // crypto sessions on the raw handle (EdDSA, ML-DSA, seal)
	idle    idleSessions  // raw-handle sessions kept open for reuse (sessions.go)

	// The connection: replaced by reconnect (recover.go) only while no
	// operation is in flight and new ones are refused (gate), so operations
	// read these fields between begin and end without further locking.
	c11    *crypto11.Context
	p11    *pkcs11.Ctx // crypto11's own module context (module.go); crypto11 finalises it
	slot   uint
	serial string
	epoch  uint64        // incremented by every reconnect; Keys rebind when it moves
	mechs  map[uint]bool // C_GetMechanismList at each connect

	kek   kekCache      // the sealing key, found or created on first use
	audit auditKeyCache // the audit key, found or created on first use

	// profile is read and tried at the first connection (profile.go,
	// trial.go) and kept across reconnects, which insist on the same token.
	profile atomic.Pointer[Profile]
	// proofs names the requests the token has carried out (see judge).
	proofs sync.Map

	gate      gate
	sessions  sessionCounter // crypto11 pool use, for metrics (stats.go)
	closed    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{} // closed by Close: the health monitor returns
	done      chan struct{} // closed by the health monitor on return
	kick      chan struct{} // an operation saw a connection-loss code: check now
	// redial asks the monitor to connect again: a re-login's reconnect
	// (loads.go) failed and left the Token down.
	redial atomic.Bool

	// identity is the serial of the token this Token is bound to, set at the
	// first connection and never changed after (reconnect refuses another
	// serial); Serial reads it without racing the monitor's connect.
	identity      atomic.Pointer[string]
	connected     chan struct{} // closed at the first connection
	connectedOnce sync.Once
}

// moduleMu serialises loading, initialising and finalising modules: the
// monitors of a pool's tokens connect on their own schedules, and
// C_Initialize/C_Finalize of one module must not interleave.
var moduleMu sync.Mutex

// Open loads the module, logs in to the token labelled cfg.TokenLabel and
// returns a Token. Only one Token per token may exist in a process: PKCS#11
// login state belongs to the application, so a second C_Login would return
// CKR_USER_ALREADY_LOGGED_IN without checking the PIN; Open detects this and
// returns ErrAlreadyOpen instead of silently accepting any PIN. Open must not run
// concurrently with another Open or Close of the same module — nor with
// another Token's reconnect on it (recover.go), which is why csrd opens one.
func Open(ctx context.Context, cfg Config, log zerolog.Logger) (*Token, error) {
	const op = "open"
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("hsm: %s: %w", op, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := newToken(cfg, log)
	if err := t.connect(); err != nil {
		return nil, err
	}
	t.opened()
	return t, nil
}

// Start is Open for a daemon that must come up even when its token cannot be
// used yet: the module file missing or not loadable, no token with the label,
// the PIN file unreadable or the PIN refused. Only a configuration no change
// on the machine can fix (Config's shape) is an error. Otherwise it returns a
// Token that is down — operations get ErrUnavailable, Healthy and Reason say
// why — while its monitor keeps trying with the reconnect backoff: loading
// the module again, finding the token, reading the PIN through
// cfg.RefreshPIN. A PIN the token refused is not tried again until
// RefreshPIN returns a different one. Connected is closed when it succeeds.
// cfg.PIN may be empty when RefreshPIN is set: it is read at each attempt.
func Start(ctx context.Context, cfg Config, log zerolog.Logger) (*Token, error) {
	const op = "open"
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("hsm: %s: %w", op, err)
	}
	if err := cfg.validateShape(); err != nil {
		return nil, err
	}
	if cfg.PIN == "" && cfg.RefreshPIN == nil {
		return nil, errors.New("hsm: config: PIN is empty")
	}
	t := newToken(cfg, log)
	if err := t.connect(); err != nil {
		if errors.Is(err, ErrAlreadyOpen) {
			return nil, err // a wiring bug, not a state of the machine
		}
		t.gate.down = err // the monitor takes it from here
		go t.monitor()
		return t, nil
	}
	t.opened()
	return t, nil
}

func newToken(cfg Config, log zerolog.Logger) *Token {
	cfg.setHealthDefaults()
	t := &Token{
		log:    log.With().Str("component", "hsm").Str("token", cfg.TokenLabel).Logger(),
		cfg:    cfg,
		label:  cfg.TokenLabel,
		wait:   cfg.PoolWaitTimeout,
		rawSem: make(chan struct{}, rawSessions),
		// Like crypto11's pool, minus its login session.
		workSem: make(chan struct{}, cfg.MaxSessions-1),
		// crypto11 keeps one persistent session out of MaxSessions.
		sessions:  sessionCounter{pool: cfg.MaxSessions - 1},
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		kick:      make(chan struct{}, 1),
		connected: make(chan struct{}),
	}
	t.gate.label = cfg.TokenLabel
	return t
}

// opened logs the first connection and starts the monitor.
func (t *Token) opened() {
	t.markConnected()
	cfg := t.cfg
	t.log.Info().Str("module", cfg.Module).Str("serial", t.serial).Uint("slot", t.slot).
		Int("max_sessions", cfg.MaxSessions).Dur("pool_wait_timeout", cfg.PoolWaitTimeout).
		Dur("health_interval", cfg.HealthInterval).Msg("hsm: token open")
	go t.monitor()
}

// markConnected publishes the token's identity after a connection.
func (t *Token) markConnected() {
	t.connectedOnce.Do(func() {
		serial := t.serial
		t.identity.Store(&serial)
		close(t.connected)
	})
}

// connect loads the module, logs in with crypto11 and attaches the raw
// handle, filling the connection fields. Open calls it once; reconnect calls
// it again after a session loss. When t.serial is already set (a reconnect),
// a token with the same label but another serial is refused: keys must not
// land on a different token that happens to carry the label.
func (t *Token) connect() error {
	moduleMu.Lock()
	defer moduleMu.Unlock()
	return t.connectLocked()
}

func (t *Token) connectLocked() error {
	const op = "open"
	if _, err := os.Stat(t.cfg.Module); err != nil {
		return classErr(op, ErrModule, "%v", err)
	}
	if t.cfg.PIN == "" && t.cfg.RefreshPIN != nil {
		// Start without a PIN yet; only the monitor (or Start) is here.
		pin, err := t.cfg.RefreshPIN()
		switch {
		case err != nil:
			return classErr(op, ErrNoPIN, "%v", err)
		case pin == "":
			return classErr(op, ErrNoPIN, "the PIN file is empty")
		}
		t.cfg.PIN = pin
	}
	cfg := t.cfg
	if err := probe(cfg.Module, cfg.TokenLabel); err != nil {
		return redact(err, cfg.PIN)
	}
	c11, err := crypto11.Configure(&crypto11.Config{
		Path:            cfg.Module,
		TokenLabel:      cfg.TokenLabel,
		Pin:             cfg.PIN,
		MaxSessions:     cfg.MaxSessions,
		PoolWaitTimeout: cfg.PoolWaitTimeout,
	})
	if err != nil {
		closeLeakedSessions(cfg.Module, cfg.TokenLabel)
		return redact(wrap(op, err), cfg.PIN)
	}
	want := t.Serial() // "" until the first connection
	t.c11 = c11
	if err := t.openRaw(cfg.Module); err != nil {
		_ = c11.Close()
		t.c11 = nil
		return redact(err, cfg.PIN)
	}
	if want != "" && t.serial != want {
		got := t.serial
		t.disconnectLocked()
		t.serial = want
		return classErr(op, ErrTokenNotFound, "token %q now has serial %q, csrd's has %q", t.label, got, want)
	}
	if t.profile.Load() == nil {
		p, err := t.learnProfile()
		if err != nil {
			t.disconnectLocked()
			return redact(err, cfg.PIN)
		}
		t.profile.Store(p)
	}
	return t.startLoadCount()
}

// startLoadCount sets the bound on keys loaded per login for this
// connection and, for a bounded token, logs out and in again so that the
// count starts from nothing (the trial rounds' keys, or a pool sibling's,
// may still be loaded).
func (t *Token) startLoadCount() error {
	bound := t.cfg.KeysPerLogin
	if bound == 0 {
		bound = t.profile.Load().KeysPerLogin
	}
	t.gate.setLoadBound(bound)
	if bound <= 0 {
		return nil
	}
	if err := t.reloginOnce(); err != nil {
		t.disconnectLocked()
		return redact(wrap("open", err), t.cfg.PIN)
	}
	return nil
}

// disconnect releases the connection: the raw handle (dlclose only) and the
// crypto11 context, which closes its sessions and, as the module's last user,
// C_Finalizes it — the only way to make a module rescan its slots. Callers
// guarantee no operation is in flight.
func (t *Token) disconnect() {
	moduleMu.Lock()
	defer moduleMu.Unlock()
	t.disconnectLocked()
}

func (t *Token) disconnectLocked() {
	t.logoutBounded()
	t.releaseRaw()
	if t.c11 != nil {
		_ = t.c11.Close()
		t.c11 = nil
	}
}

// releaseRaw closes the raw handle's idle sessions and lets go of the
// module context, which crypto11 finalises when its last Context closes.
func (t *Token) releaseRaw() {
	if t.p11 == nil {
		return
	}
	t.idle.closeAll(t.p11)
	releaseModule(t.cfg.Module)
	t.p11 = nil
}

// openRaw attaches the raw handle to the module context crypto11 has just
// initialised and logged in to (see module.go), and checks that a fresh
// session on it is logged in.
func (t *Token) openRaw(module string) error {
	const op = "open"
	p, err := moduleOf(t.c11)
	if err != nil {
		return classErr(op, ErrModule, "%v", err)
	}
	t.p11 = p
	holdModule(module, p)
	slot, info, err := findSlot(p, t.label)
	if err != nil {
		t.releaseRaw()
		return err
	}
	t.slot, t.serial = slot, info.SerialNumber
	if err := t.readMechanisms(); err != nil {
		t.releaseRaw()
		return err
	}
	// Login state is per application and token, so a fresh session must
	// already be in the user-functions state crypto11 established.
	if err := t.checkHealth(); err != nil {
		t.releaseRaw()
		return err
	}
	return nil
}

// readMechanisms reads the token's mechanism list (C_GetMechanismList).
func (t *Token) readMechanisms() error {
	ms, err := t.p11.GetMechanismList(t.slot)
	if err != nil {
		return wrap("open", err)
	}
	t.mechs = make(map[uint]bool, len(ms))
	for _, m := range ms {
		t.mechs[m.Mechanism] = true
	}
	return nil
}

// probe runs before crypto11.Configure so that a missing token gives
// ErrTokenNotFound (crypto11's own error is unexported) and a token this
// process is already logged in to gives ErrAlreadyOpen. While another Token
// holds the module, its context is the one to ask (module.go); otherwise
// probe loads the module itself, and finalises it again if its C_Initialize
// answered CKR_OK (crypto11 fails on CKR_CRYPTOKI_ALREADY_INITIALIZED).
func probe(module, label string) error {
	const op = "open"
	if p := heldModule(module); p != nil {
		return probeLogin(p, label)
	}
	p := pkcs11.New(module)
	if p == nil {
		return classErr(op, ErrModule, "cannot load module %s", module)
	}
	defer p.Destroy()
	err := p.Initialize()
	if err != nil && !isCKR(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		return wrap(op, err)
	}
	if err == nil {
		defer func() { _ = p.Finalize() }()
	}
	return probeLogin(p, label)
}

// probeLogin finds the token labelled label on p and refuses it when a
// session on it is already logged in.
func probeLogin(p *pkcs11.Ctx, label string) error {
	const op = "open"
	slot, _, err := findSlot(p, label)
	if err != nil {
		return err
	}
	sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		return wrap(op, err)
	}
	defer func() { _ = p.CloseSession(sh) }()
	info, err := p.GetSessionInfo(sh)
	if err != nil {
		return wrap(op, err)
	}
	if info.State == pkcs11.CKS_RO_USER_FUNCTIONS || info.State == pkcs11.CKS_RW_USER_FUNCTIONS {
		return classErr(op, ErrAlreadyOpen, "")
	}
	return nil
}

// closeLeakedSessions closes the sessions a failed crypto11.Configure left on
// the token. crypto11 v1.6.2 does not close its long-term session when C_Login
// fails; while another Token keeps the module loaded, that session would
// survive, and a later successful login would outlive Close (login state lasts
// until the token's last session closes). probe established that nobody in
// this process was logged in to the token, so any session on it is crypto11's.
// With no Token on the module, crypto11 has finalised it, unless something
// else in the process initialised it.
func closeLeakedSessions(module, label string) {
	p := heldModule(module)
	if p == nil {
		if p = pkcs11.New(module); p == nil {
			return
		}
		defer p.Destroy()
		if err := p.Initialize(); err == nil {
			_ = p.Finalize() // finalised: nothing leaked
			return
		} else if !isCKR(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			return
		}
	}
	if slot, _, err := findSlot(p, label); err == nil {
		_ = p.CloseAllSessions(slot)
	}
}

// findSlot returns the one slot whose token is labelled label.
func findSlot(p *pkcs11.Ctx, label string) (uint, pkcs11.TokenInfo, error) {
	const op = "find token"
	slots, err := p.GetSlotList(true)
	if err != nil {
		return 0, pkcs11.TokenInfo{}, wrap(op, err)
	}
	var (
		found []uint
		info  pkcs11.TokenInfo
	)
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil {
			return 0, pkcs11.TokenInfo{}, wrap(op, err)
		}
		if ti.Label == label {
			found = append(found, s)
			info = ti
		}
	}
	switch len(found) {
	case 0:
		return 0, info, classErr(op, ErrTokenNotFound, "no token labelled %q", label)
	case 1:
		return found[0], info, nil
	default:
		// crypto11 would take the first; refuse rather than risk keys landing on
		// the wrong token.
		return 0, info, classErr(op, nil, "%d tokens labelled %q (slots %v)", len(found), label, found)
	}
}

// Close releases the token. It stops the health monitor (letting a reconnect
// attempt in progress finish) and waits for running operations, which cannot
// be interrupted, to finish. Closing twice is harmless.
func (t *Token) Close() error {
	t.closeOnce.Do(func() {
		t.closed.Store(true)
		close(t.stop)
		<-t.done
		t.gate.drain()
		for range cap(t.rawSem) { // raw operations in flight have ended by now
			t.rawSem <- struct{}{}
		}
		for range cap(t.workSem) {
			t.workSem <- struct{}{}
		}
		t.disconnect() // crypto11 owns C_Finalize
		t.log.Info().Msg("hsm: token closed")
	})
	return nil
}

// Label returns the token label.
func (t *Token) Label() string { return t.label }

// Serial returns the token serial number from C_GetTokenInfo at the first
// connection; "" while a Start's token has never been connected.
func (t *Token) Serial() string {
	if s := t.identity.Load(); s != nil {
		return *s
	}
	return ""
}

// HasMechanism reports whether the token listed mechanism m (CKM_*) when
// it was connected.
func (t *Token) HasMechanism(m uint) bool { return t.mechs[m] }

// requireMechanisms refuses, before anything is created, an operation the
// token cannot do.
func (t *Token) requireMechanisms(op, what string, ms ...uint) error {
	for _, m := range ms {
		if !t.mechs[m] {
			return classErr(op, ErrUnsupported, "%s: token %q does not offer mechanism 0x%x", what, t.label, m)
		}
	}
	return nil
}

// Ping proves that the token is present (C_GetTokenInfo) and that a session
// of csrd's raw handle — reused when one is idle, else newly opened — is
// logged in, for readiness checks. It does not use crypto11's pool, so a busy
// pool does not read as down; while the token is reconnecting it returns
// ErrUnavailable at once.
func (t *Token) Ping(ctx context.Context) error {
	return t.withRawSession(ctx, "ping", func(sh pkcs11.SessionHandle) error {
		return t.checkSession(sh)
	})
}

// begin is called before every operation: calls into the module cannot be
// cancelled once started, so a cancelled ctx, a closed Token or one that is
// reconnecting stops them here. On success the operation is counted in flight
// and the caller must call t.end when it no longer touches the connection.
func (t *Token) begin(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("hsm: %s: %w", op, err)
	}
	return t.gate.enter(op, &t.closed)
}

// end marks an operation begun with begin as finished.
func (t *Token) end() { t.gate.leave() }

// withRawSession runs fn on a maintenance session of the raw handle (an idle
// one when there is one: see sessions.go).
// Waiting for one of the rawSessions slots is bounded by ctx and
// PoolWaitTimeout; fn's PKCS#11 calls are not. Errors are translated for op.
func (t *Token) withRawSession(ctx context.Context, op string, fn func(pkcs11.SessionHandle) error) error {
	return t.withSession(ctx, t.rawSem, op, fn)
}

// withWorkSession is withRawSession for cryptographic work (EdDSA and
// ML-DSA keys, sealing), on its own MaxSessions-1 slots.
func (t *Token) withWorkSession(ctx context.Context, op string, fn func(pkcs11.SessionHandle) error) error {
	return t.withSession(ctx, t.workSem, op, fn)
}

func (t *Token) withSession(ctx context.Context, sem chan struct{}, op string, fn func(pkcs11.SessionHandle) error) error {
	if err := t.begin(ctx, op); err != nil {
		return err
	}
	defer t.end()
	timer := time.NewTimer(t.wait)
	defer timer.Stop()
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("hsm: %s: %w", op, ctx.Err())
	case <-timer.C:
		return classErr(op, ErrUnavailable, "no session free within %v", t.wait)
	}
	defer func() { <-sem }()
	sh, ok := t.idle.take()
	if !ok {
		var err error
		if sh, err = t.p11.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION); err != nil {
			return t.wrap(op, err)
		}
	}
	err := fn(sh)
	if err != nil {
		// The session may be left mid-operation or be the thing that broke:
		// close it (that never logs the application out: crypto11 keeps a
		// session open) rather than hand it to the next caller.
		_ = t.p11.CloseSession(sh)
		return t.wrap(op, err)
	}
	t.idle.put(sh)
	return nil
}

func isCKR(err error, rv uint) bool {
	var p11 pkcs11.Error
	return errors.As(err, &p11) && uint(p11) == rv
}

// redact drops the message of err's cause if it somehow contains the PIN; no
// known crypto11 or module message does, but an error string is logged and a
// PIN must never be.
func redact(err error, pin string) error {
	var e *Error
	if pin == "" || !errors.As(err, &e) || e.cause == nil || !strings.Contains(e.cause.Error(), pin) {
		return err
	}
	e.cause = errors.New("(message withheld: it contained the PIN)")
	return err
}
