package hsm

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"
)

// Keys loaded per login.
//
// Some modules keep every key they generated or used loaded in the device
// until C_Logout, and the device holds only so many. tpm2-pkcs11 loads a
// key into the TPM when it generates it or first signs with it and
// flushes its transient objects only at logout (its token_logout); the
// resource manager between it and the TPM caps each client's transient
// objects (tpm2-abrmd: 27 by default; the kernel's /dev/tpmrm0 fewer), so
// after some keys every further Generate or first signature fails with
// CKR_GENERAL_ERROR. Measured on swtpm with tpm2-abrmd's default: 8 keys
// per login, generated or signed with alike; signing again with a key
// loaded since the login costs nothing. For such a token the gate counts
// the keys operations load (loadBudget) and, before one would pass the
// bound, waits until nothing is in flight, logs out and in again on the
// one module instance (which flushes them) and lets operations go on.
// Object handles stay valid across the re-login.

// tpm2PKCS11Manufacturer is tpm2-pkcs11's C_GetInfo manufacturerID.
const tpm2PKCS11Manufacturer = "tpm2-software.github.io"

// DefaultTPMKeysPerLogin is the bound for tpm2-pkcs11: tpm2-abrmd's
// default of 27 transient objects per client holds 8 keys besides the
// token's own objects; two are left for what csrd does not count
// (destroying and finding keys).
const DefaultTPMKeysPerLogin = 6

// keysPerLogin is the profile's bound for a module, by its C_GetInfo: 0
// (none) unless the module is one known to keep keys loaded until logout.
// PKCS#11 has no way to say this, and a trial could learn it only by
// exhausting the device — failing the very operations the bound is there
// to keep working, with a CKR_GENERAL_ERROR that says nothing — so the
// module's own name is the evidence.
func keysPerLogin(info pkcs11.Info) int { return ModuleKeysPerLogin(info) }

// ModuleKeysPerLogin is the bound on keys loaded per login that csrd's
// profile gives a module with C_GetInfo info (0: none), for a raw PKCS#11
// loop that must use a token as csrd does.
func ModuleKeysPerLogin(info pkcs11.Info) int {
	if blankTrim(info.ManufacturerID) == tpm2PKCS11Manufacturer {
		return DefaultTPMKeysPerLogin
	}
	return 0
}

// libraryOf names the module as its C_GetInfo does.
func libraryOf(info pkcs11.Info) string {
	s := blankTrim(info.ManufacturerID)
	if d := blankTrim(info.LibraryDescription); d != "" {
		s += " " + d
	}
	return strings.TrimSpace(fmt.Sprintf("%s %d.%d", s, info.LibraryVersion.Major, info.LibraryVersion.Minor))
}

// loadBudget is the gate's count of objects loaded since the last login;
// gate.mu guards it.
type loadBudget struct {
	bound     int             // 0: the token needs no re-login
	used      int             // keys loaded (or about to be) since the login
	loaded    map[string]bool // keys (CKA_ID, hex) loaded since the login
	relogging bool            // a re-login runs: nothing may enter
	failed    error           // the last re-login's failure, until the next connection
	full      bool            // a load failed first thing after a login: only a new connection frees room
	relogins  uint64
}

// reset starts a new login's count.
func (b *loadBudget) reset() { b.used, b.loaded, b.failed = 0, nil, nil }

// cost is what using key (hex CKA_ID) adds to the count: nothing when it
// was loaded since the login.
func (b *loadBudget) cost(key string) int {
	if b.loaded[key] {
		return 0
	}
	return 1
}

func (b *loadBudget) take(key string, n int) {
	b.used += n
	if b.loaded == nil {
		b.loaded = map[string]bool{}
	}
	b.loaded[key] = true
}

// enterLoading is enter for an operation that loads the key with CKA_ID
// id (generates it, or signs with it). When the bound would be passed it
// waits until the operations in flight have left and runs relogin (in
// this goroutine) with the gate shut; a failed re-login refuses the
// operation.
func (g *gate) enterLoading(op string, closed func() bool, id []byte, relogin func() error) error {
	key := hex.EncodeToString(id)
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		switch {
		case closed():
			return classErr(op, ErrUnavailable, "token closed")
		case g.down != nil:
			return g.refusal(op)
		case g.loads.relogging:
			g.cond().Wait()
			continue
		case g.loads.failed != nil: // logged out: the monitor reconnects
			return g.loads.failed
		}
		b := &g.loads
		c := b.cost(key)
		if b.bound == 0 || b.used+c <= b.bound || b.used == 0 {
			b.take(key, c)
			g.inflight++
			return nil
		}
		if g.inflight > 0 {
			g.cond().Wait() // leave broadcasts when the last one leaves
			continue
		}
		b.relogging = true
		g.mu.Unlock()
		err := relogin()
		g.mu.Lock()
		b.relogging = false
		g.cond().Broadcast()
		if err != nil {
			b.failed = err
			return err
		}
		b.reset()
		b.relogins++
	}
}

// spend marks the login's count full: the next loading operation logs in
// afresh first. When the failed load was the login's first, a logout
// cannot help — the device is full of objects no logout flushes (a refused
// PIN's or template's) — and that next operation connects again instead.
func (g *gate) spend() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.loads.bound > 0 {
		g.loads.full = g.loads.full || g.loads.used <= 1
		g.loads.used, g.loads.loaded = g.loads.bound, nil
	}
}

// takeFull reports, once, that a load failed first thing after a login.
func (g *gate) takeFull() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	full := g.loads.full
	g.loads.full = false
	return full
}

// spentAfter reports whether err is a CKR_GENERAL_ERROR on a token with a
// bound on keys per login — perhaps the device out of room for keys csrd
// did not count (another token's of the module, a failed login's) — and
// if so marks the count full, so that trying again logs in afresh first.
func (t *Token) spentAfter(err error) bool {
	var e *Error
	if !errors.As(err, &e) || e.CKR != pkcs11.CKR_GENERAL_ERROR || t.KeysPerLogin() == 0 {
		return false
	}
	t.gate.spend()
	return true
}

// setLoadBound sets the bound for a new connection and starts its count.
func (g *gate) setLoadBound(bound int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.loads.bound = max(bound, 0)
	g.loads.reset()
}

// beginLoading is begin for an operation that loads the key with CKA_ID
// id into the token: generating it or signing with it.
func (t *Token) beginLoading(ctx context.Context, op string, id []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("hsm: %s: %w", op, err)
	}
	return t.gate.enterLoading(op, t.closed.Load, id, t.relogin)
}

// relogin logs the application out of the token and in again on a session
// of its own, flushing the keys the module keeps loaded. It runs only
// while nothing else is in flight. When the login fails for want of room
// in the device (tpm2-pkcs11 leaves objects loaded after a refused PIN or
// a refused template, which no logout flushes), it connects again, which
// finalises the module and so frees everything the device holds for this
// process. A refused PIN, or a connection that fails, leaves the token to
// the monitor, which handles both as after any session loss.
func (t *Token) relogin() error {
	const op = "re-login"
	if t.gate.takeFull() {
		t.log.Warn().Msg("hsm: a key failed to load first thing after a login: the token holds objects no logout frees; connecting again")
		return t.reconnectForRoom()
	}
	err := t.reloginOnce()
	if err == nil {
		t.log.Debug().Msg("hsm: logged out and in again to free the keys the token keeps loaded")
		return nil
	}
	err = redact(t.wrap(op, err), t.cfg.PIN)
	if errors.Is(err, ErrLogin) {
		t.log.Error().Err(err).Msg("hsm: re-login to free the keys the token keeps loaded was refused")
		return err // wrap asked the monitor to check the token
	}
	t.log.Warn().Err(err).Msg("hsm: re-login to free the keys the token keeps loaded failed; connecting again")
	return t.reconnectForRoom()
}

// reconnectForRoom connects to the token again, which finalises the module
// and so frees everything the device holds for this process. A connection
// that fails leaves the token to the monitor.
func (t *Token) reconnectForRoom() error {
	t.disconnect()
	if cErr := t.connect(); cErr != nil {
		t.gate.mu.Lock()
		t.gate.down = cErr
		t.gate.mu.Unlock()
		t.redial.Store(true)
		select {
		case t.kick <- struct{}{}:
		default:
		}
		return cErr
	}
	t.gate.mu.Lock()
	t.epoch++ // a new module instance: keys find their objects again
	t.gate.mu.Unlock()
	return nil
}

// logoutBounded logs a token with a bound out before its connection is
// released, so that the device holds none of its keys for a module that
// stays loaded (a pool's other tokens, the next connection).
func (t *Token) logoutBounded() {
	if t.p11 == nil || t.KeysPerLogin() <= 0 {
		return
	}
	if sh, err := t.p11.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION); err == nil {
		_ = t.p11.Logout(sh)
		_ = t.p11.CloseSession(sh)
	}
}

func (t *Token) reloginOnce() error {
	sh, err := t.p11.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		return err
	}
	defer func() { _ = t.p11.CloseSession(sh) }()
	if err := t.p11.Logout(sh); err != nil && !isCKR(err, pkcs11.CKR_USER_NOT_LOGGED_IN) {
		return err
	}
	return t.p11.Login(sh, pkcs11.CKU_USER, t.cfg.PIN)
}

// Relogins returns how many times the Token has logged out and in again
// to free the keys its module keeps loaded (see KeysPerLogin).
func (t *Token) Relogins() uint64 {
	t.gate.mu.Lock()
	defer t.gate.mu.Unlock()
	return t.gate.loads.relogins
}

// KeysPerLogin returns the bound in force: the keys csrd lets the token
// load between two logins (0: none).
func (t *Token) KeysPerLogin() int {
	t.gate.mu.Lock()
	defer t.gate.mu.Unlock()
	return t.gate.loads.bound
}
