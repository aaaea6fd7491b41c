package hsm

import (
	"errors"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// This file keeps the Token usable across a lost session, login or device
// (a USB HSM unplugged, a network HSM restarted, a SoftHSM token directory
// moved away) without restarting csrd.
//
// A monitor goroutine checks the token every HealthInterval, and at once when
// an operation sees a connection-loss code (lostCodes). When the check fails
// the Token goes down: new operations get ErrUnavailable immediately, the
// monitor waits for running ones to return (they cannot be cancelled), closes
// the crypto11 context — which, as the module's last user, C_Finalizes it, the
// only way to make a module rescan its slots — and reconnects (C_Initialize,
// find the token, C_Login, attach the raw handle) with exponential backoff
// until it succeeds or Close is called. A token with the same label but a
// different serial is refused. A rejected PIN is never retried as such: every
// failed C_Login counts towards locking the token. With Config.RefreshPIN the
// monitor instead polls for a different PIN (the operator rotated it in the
// PIN file) and logs in with that; without it the Token stays down.
//
// Object handles do not survive C_Finalize, so a *Key made before a reconnect
// finds its key pair again by CKA_ID and CKA_LABEL on first use after it
// (rebind); that is the only C_FindObjects a request can cause, and only once
// per key per reconnect.

// lostCodes are the return codes that suggest the connection (not the
// request) is broken. Seeing one only triggers a health check; the check
// decides whether to reconnect.
var lostCodes = map[uint]bool{
	pkcs11.CKR_SESSION_HANDLE_INVALID:   true,
	pkcs11.CKR_SESSION_CLOSED:           true,
	pkcs11.CKR_DEVICE_REMOVED:           true,
	pkcs11.CKR_DEVICE_ERROR:             true,
	pkcs11.CKR_TOKEN_NOT_PRESENT:        true,
	pkcs11.CKR_TOKEN_NOT_RECOGNIZED:     true,
	pkcs11.CKR_USER_NOT_LOGGED_IN:       true,
	pkcs11.CKR_GENERAL_ERROR:            true,
	pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED: true,
	pkcs11.CKR_SLOT_ID_INVALID:          true,
}

// healthTimeout bounds waiting for a health check. The PKCS#11 calls inside
// cannot be cancelled; a check that outlives this is treated as a failure.
const healthTimeout = 10 * time.Second

// healthPatience bounds how long a check may wait while other operations
// are in flight but none of them finishes: a module that answers nothing
// for that long is hung and is taken down. While operations keep finishing
// the module is demonstrably alive and a slow check waits on; while nothing
// but the check is in flight, nobody is kept waiting and the time does not
// count (see timedHealthCheck).
const healthPatience = 2 * time.Minute

// Connected is closed once the Token has connected for the first time: at
// once for Open, later for a Start whose token was not usable yet.
func (t *Token) Connected() <-chan struct{} { return t.connected }

// wrap translates err for op (see the package-level wrap) and, when the code
// suggests a lost connection, asks the monitor for a health check.
func (t *Token) wrap(op string, err error) error {
	err = withToken(wrap(op, err), t.label)
	var e *Error
	// A GCM tag mismatch is CKR_GENERAL_ERROR on SoftHSM: a bad blob, not a
	// lost connection (see authFailure).
	if errors.As(err, &e) && lostCodes[e.CKR] && !errors.Is(err, ErrSealed) {
		select {
		case t.kick <- struct{}{}:
		default: // a check is already pending
		}
	}
	return err
}

// monitor runs from Open until Close: periodic and on-demand health checks,
// and reconnection when one fails.
func (t *Token) monitor() {
	defer close(t.done)
	if t.Healthy() != nil && !t.closed.Load() { // Start without a usable token
		t.gate.mu.Lock()
		failed := t.gate.down
		t.gate.mu.Unlock()
		if !t.connectWithBackoff(time.Now(), 1, failed) {
			return
		}
	}
	tick := time.NewTicker(t.cfg.HealthInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-t.kick:
		case <-tick.C:
		}
		if t.redial.CompareAndSwap(true, false) {
			t.connectWithBackoff(time.Now(), 1, nil)
			continue
		}
		if err := t.timedHealthCheck(); err != nil {
			t.reconnect(err)
		}
	}
}

// timedHealthCheck runs checkHealth with healthTimeout. A check that hangs
// is abandoned to its goroutine (PKCS#11 calls cannot be cancelled) and
// counts as a failure; reconnect then waits for it like for any operation.
//
// A check that is only slow is not a failure. A module may serialise
// C_GetTokenInfo behind long operations — csrd's own generations, or another
// process's writes to the same token — and taking a working token down for
// that refuses work for no fault, for as long as the reconnect must wait for
// the stuck call anyway. So the wait is extended one healthTimeout at a
// time while patience allows it: on while operations keep finishing (the
// module answers), and on while nothing but the check is in flight (nobody
// waits for it). A hung module is still taken down, healthPatience after the
// first of csrd's operations that stalls with it. An operation that fails
// with a connection-loss code still triggers a check at once (kick), and a
// check that returns an error is a failure at once.
func (t *Token) timedHealthCheck() error {
	if err := t.gate.enter("health check", &t.closed); err != nil {
		return nil // closed or already down: nothing to check
	}
	res := make(chan error, 1)
	go func() {
		defer t.gate.leave()
		res <- t.checkHealth()
	}()
	seen, _ := t.gate.progress()
	pat := newPatience(seen, time.Now())
	timer := time.NewTimer(healthTimeout)
	defer timer.Stop()
	for waited := healthTimeout; ; waited += healthTimeout {
		select {
		case err := <-res:
			if waited > healthTimeout {
				t.log.Info().Dur("waited", waited-healthTimeout).Msg("hsm: slow health check answered")
			}
			return err
		case <-timer.C:
			finished, busy := t.gate.progress()
			if pat.keepWaiting(finished, busy, time.Now()) {
				if waited == healthTimeout {
					t.log.Warn().Dur("waited", waited).Bool("csrd_busy", busy).
						Msg("hsm: health check not answered yet; waiting while the token is busy or csrd asks nothing else of it")
				}
				timer.Reset(healthTimeout)
				continue
			}
			return classErr("health check", ErrUnavailable, "no answer within %v, and none of csrd's operations on the token finished for %v", waited, healthPatience)
		case <-t.stop:
			return nil
		}
	}
}

// patience decides, at each healthTimeout of a check that has not
// answered, whether to wait on. The clock that healthPatience bounds runs
// only while operations besides the check are in flight and none of them
// finishes: a finished operation proves the module answers, and time with
// nothing else in flight keeps nobody waiting.
type patience struct {
	seen  uint64    // operations finished at the last look
	since time.Time // when the clock last started from zero
}

func newPatience(finished uint64, now time.Time) patience {
	return patience{seen: finished, since: now}
}

// keepWaiting records a look at the gate (finished operations so far,
// whether any besides the check is in flight) and reports whether to wait on.
func (p *patience) keepWaiting(finished uint64, busy bool, now time.Time) bool {
	if finished != p.seen || !busy {
		p.seen, p.since = finished, now
	}
	return now.Sub(p.since) < healthPatience
}

// checkHealth asks the token for its info (which fails once the token is gone,
// even while sessions still answer) and opens a session that must be logged in.
// Callers guarantee the connection fields are stable.
func (t *Token) checkHealth() error {
	const op = "health check"
	info, err := t.p11.GetTokenInfo(t.slot)
	if err != nil {
		return wrap(op, err)
	}
	if info.Label != t.label || info.SerialNumber != t.serial {
		return classErr(op, ErrTokenNotFound, "slot %d now holds token %q serial %q", t.slot, info.Label, info.SerialNumber)
	}
	sh, err := t.p11.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return wrap(op, err)
	}
	defer func() { _ = t.p11.CloseSession(sh) }()
	return wrap(op, t.checkSession(sh))
}

// checkSession fails unless sh is in the logged-in read-write state.
func (t *Token) checkSession(sh pkcs11.SessionHandle) error {
	if _, err := t.p11.GetTokenInfo(t.slot); err != nil {
		return err
	}
	info, err := t.p11.GetSessionInfo(sh)
	if err != nil {
		return err
	}
	if info.State != pkcs11.CKS_RW_USER_FUNCTIONS {
		return classErr("session", ErrLogin, "session state %d, not logged in", info.State)
	}
	return nil
}

// reconnect takes the Token down, waits for operations in flight, drops the
// connection and builds a new one with backoff. It returns when connected
// again, when the PIN is refused without RefreshPIN (the Token stays down) or
// when Close is called.
func (t *Token) reconnect(cause error) {
	start := time.Now()
	t.log.Error().Err(cause).Msg("hsm: token health check failed; refusing work and reconnecting")
	t.gate.close(cause)
	t.disconnect()
	t.connectWithBackoff(start, 1, nil)
}

// connectWithBackoff connects with exponential backoff while the Token is
// down, recording each failure as the reason it is down (Healthy, Reason).
// failed is the first connection's failure when Start could not connect
// (it is handled before anything is tried again: a refused PIN must not be
// tried twice); nil means a reconnect, which bumps the epoch. It reports
// whether the Token is connected (false: Close was called, or the PIN was
// refused and there is no RefreshPIN).
func (t *Token) connectWithBackoff(start time.Time, attempt int, failed error) bool {
	first := failed != nil
	backoff := t.cfg.ReconnectMin
	for err := failed; ; attempt, err = attempt+1, nil {
		if err == nil {
			err = t.connect()
		}
		if err == nil {
			t.reopened(start, attempt, first)
			return true
		}
		t.gate.mu.Lock()
		t.gate.down = err
		t.gate.mu.Unlock()
		if errors.Is(err, ErrLogin) {
			if !t.pinRefused(err, first) {
				return false
			}
			backoff = t.cfg.ReconnectMin
			continue
		}
		t.logRetry(err, attempt, backoff)
		select {
		case <-t.stop:
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, t.cfg.ReconnectMax)
	}
}

// reopened opens the gate after a successful connect; a reconnect bumps
// the epoch so that keys find their objects again on the new connection.
func (t *Token) reopened(start time.Time, attempt int, first bool) {
	t.gate.mu.Lock()
	if !first {
		t.epoch++
	}
	t.gate.down = nil
	t.gate.mu.Unlock()
	t.markConnected()
	if first {
		t.log.Warn().Int("attempts", attempt).Dur("waited", time.Since(start)).
			Str("serial", t.serial).Uint("slot", t.slot).Msg("hsm: token open after waiting for it")
		return
	}
	t.log.Warn().Int("attempts", attempt).Dur("down_for", time.Since(start)).
		Str("serial", t.serial).Msg("hsm: token reconnected")
}

// pinRefused handles a refused PIN. Retrying the same PIN would count
// towards locking the token, so it waits for a different PIN from
// RefreshPIN or, without RefreshPIN, for Close. It reports whether there is
// a new PIN to try.
func (t *Token) pinRefused(err error, first bool) bool {
	relogin := " on re-login"
	if first {
		relogin = ""
	}
	if t.cfg.RefreshPIN == nil {
		t.log.Error().Err(err).Msg("hsm: token refused the PIN" + relogin + "; not retrying (fix the PIN and restart csrd)")
		<-t.stop
		return false
	}
	t.log.Error().Err(err).Msg("hsm: token refused the PIN" + relogin + "; waiting for a different PIN in the PIN file")
	return t.waitForNewPIN()
}

// logRetry logs a failed connect. The first failure says what is wrong at
// error level; the retries that follow are the same story.
func (t *Token) logRetry(err error, attempt int, backoff time.Duration) {
	ev := t.log.Warn()
	if attempt <= 1 {
		ev = t.log.Error()
	}
	ev.Err(err).Int("attempt", attempt).Dur("retry_in", backoff).Str("reason", Reason(err)).Msg("hsm: cannot connect to the token; retrying")
}

// waitForNewPIN polls RefreshPIN until it returns a PIN other than the
// refused one, which it installs for the next connect; false when Close is
// called first. It runs on the monitor goroutine, the only user of t.cfg
// while the Token is down.
func (t *Token) waitForNewPIN() bool {
	backoff := t.cfg.ReconnectMin
	for {
		select {
		case <-t.stop:
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, t.cfg.ReconnectMax)
		pin, err := t.cfg.RefreshPIN()
		switch {
		case err != nil:
			t.log.Warn().Err(err).Dur("retry_in", backoff).Msg("hsm: cannot read the PIN again")
		case pin != "" && pin != t.cfg.PIN:
			t.cfg.PIN = pin
			t.log.Warn().Msg("hsm: the PIN changed; logging in with the new one")
			return true
		}
	}
}

// bound returns the crypto11 signer for k on the current connection, finding
// the key pair again after a reconnect. Call between begin and end.
func (k *Key) bound(op string) (crypto11.Signer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.epoch == k.tok.epoch {
		return k.signer, nil
	}
	var label []byte // nil: any label (a Key from a URI may name only its CKA_ID)
	if k.ref.Label != "" {
		label = []byte(k.ref.Label)
	}
	found, err := k.tok.c11.FindKeyPair(k.ref.ID, label)
	switch {
	case err != nil:
		return nil, k.tok.wrap(op, err)
	case found == nil:
		return nil, classErr(op, ErrNotFound, "key pair %s not on the token after reconnecting", k.ref)
	}
	k.signer, k.epoch = found, k.tok.epoch
	k.tok.log.Info().Str("key", k.ref.String()).Msg("hsm: key handle found again after reconnect")
	return k.signer, nil
}
