package auth

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// ErrUnauthenticated: the credentials are wrong, unknown, expired or
// malformed. Deliberately one error for all of them: the client learns
// nothing about which names exist.
var ErrUnauthenticated = errors.New("auth: authentication failed")

const (
	// reloadEvery bounds how often the file is stat'ed for changes.
	reloadEvery = time.Second
	// cacheTTL: how long a verified password is remembered. A password
	// removed from the file stops working at the next reload regardless,
	// because the cache key includes the stored hash.
	cacheTTL = 5 * time.Minute
	// cacheMax bounds the cache; when full it is emptied (cheap, rare).
	cacheMax = 4096
)

// Options tune how credentials are checked. Zero fields take the defaults.
type Options struct {
	// Throttle counts failures and locks out sources that keep guessing;
	// nil: nothing is counted.
	Throttle *Throttle
	// VerifyQueue is how many password verifications may wait for one of
	// the DefaultVerifySlots; beyond it a Basic attempt gets ErrBusy at once.
	VerifyQueue int
	// VerifyPerSource is how many password verifications one source may
	// have running or waiting; beyond it the attempt is throttled at once.
	VerifyPerSource int
}

// Authenticator checks credentials against the auth file.
//
// What can be guessed (passwords, API tokens) is throttled per source and
// claimed identity (see Throttle); a credential that cannot be guessed (a
// client certificate the TLS layer verified) is let through even from a
// locked-out source, as is a valid API token, whose 256 random bits no
// source can guess. Slow password verifications are admitted by a bounded
// verifier (see verifier), and an unknown user name is verified against a
// dummy hash of the file's costliest parameters, so the response time does
// not tell which names exist.
type Authenticator struct {
	path     string
	log      zerolog.Logger
	now      func() time.Time
	throttle *Throttle
	verifier *verifier
	// check verifies a password against a hash (VerifyPassword; a seam
	// for tests that hold verifications in flight).
	check func(hash, password string) (bool, error)

	mu        sync.Mutex
	file      *File
	dummy     string // hash of the file's costliest parameters, for unknown names
	costs     map[hashCost]time.Duration
	stamp     fileStamp
	lastCheck time.Time

	cacheKey [32]byte
	cacheMu  sync.Mutex
	cache    map[[32]byte]time.Time
}

type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

// Open loads the auth file at path; a missing or invalid file is an error,
// so csrd never starts with authentication silently off.
func Open(path string, log zerolog.Logger, o Options) (*Authenticator, error) {
	a := &Authenticator{
		path:     path,
		log:      log.With().Str("component", "auth").Logger(),
		now:      time.Now,
		throttle: o.Throttle,
		verifier: newVerifier(DefaultVerifySlots, cmp.Or(o.VerifyQueue, DefaultVerifyQueue),
			cmp.Or(o.VerifyPerSource, DefaultVerifyPerSource)),
		check: VerifyPassword,
		costs: map[hashCost]time.Duration{},
		cache: map[[32]byte]time.Time{},
	}
	if _, err := rand.Read(a.cacheKey[:]); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	st, err := stampOf(path)
	if err != nil {
		return nil, err
	}
	f, err := LoadFile(path)
	if err != nil {
		return nil, err
	}
	a.stamp, a.lastCheck = st, a.now()
	a.install(f)
	a.log.Info().Str("file", path).Int("users", len(f.Users)).Int("tokens", len(f.Tokens)).
		Int("clients", len(f.Clients)).Msg("auth: file loaded")
	return a, nil
}

// install puts f in force with the dummy hash for unknown names, and warns
// about users whose hash is cheaper than csrd's default. Called with a.mu
// held (or before a is shared).
func (a *Authenticator) install(f *File) {
	dummy, top, weak := costliest(f, a.costs)
	a.file, a.dummy = f, dummy
	for _, w := range weak {
		a.log.Warn().Str("user", w).Str("default", hashCost{argon: DefaultArgon2}.String()).
			Msg("auth: password hash cheaper than csrd's default: it resists offline guessing less, and its quicker answer tells that the name exists; give the user a new password with csrctl user add -replace")
	}
	if dummy != "" {
		a.log.Debug().Str("cost", top.String()).Msg("auth: unknown user names are verified at the file's costliest hash parameters")
	}
}

// current returns the file in force and its dummy hash, re-reading the
// file when it changed.
func (a *Authenticator) current() (*File, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if now.Sub(a.lastCheck) < reloadEvery {
		return a.file, a.dummy
	}
	a.lastCheck = now
	st, err := stampOf(a.path)
	if err != nil {
		a.log.Error().Err(err).Msg("auth: cannot stat auth file; keeping the loaded version")
		return a.file, a.dummy
	}
	if st == a.stamp {
		return a.file, a.dummy
	}
	f, err := LoadFile(a.path)
	if err != nil {
		a.log.Error().Err(err).Msg("auth: auth file changed but is invalid; keeping the loaded version")
		return a.file, a.dummy
	}
	a.stamp = st
	a.install(f)
	a.log.Info().Int("users", len(f.Users)).Int("tokens", len(f.Tokens)).Int("clients", len(f.Clients)).
		Msg("auth: file reloaded")
	return a.file, a.dummy
}

// Basic verifies a Basic-auth user name and password from source src (a
// client address). Keyfactor clients send "DOMAIN\user"; see lookupUser for
// how the domain is matched. A locked-out source is refused before the
// password is looked at; a password verified recently (the cache) needs no
// new verification; anything else reserves an attempt with the throttle
// and then a place with the verifier, or is refused at once.
func (a *Authenticator) Basic(ctx context.Context, src, name, password string) (Identity, error) {
	f, dummy := a.current()
	u := f.lookupUser(name)
	claim, hash := "user:"+strings.ToLower(name), dummy
	if u != nil {
		claim, hash = "user:"+strings.ToLower(u.Name), u.PasswordHash
	}
	if d, locked := a.throttle.Locked(src); locked {
		return Identity{}, &ThrottledError{RetryAfter: d, Locked: true}
	}
	key := a.cacheKeyOf(hash, password)
	if u != nil && a.cached(key) {
		a.throttle.Succeed(src, claim)
		return Identity{Name: u.Name, Method: MethodBasic, Grants: u.Grants}, nil
	}
	att, err := a.throttle.Begin(src, claim)
	if err != nil {
		return Identity{}, err
	}
	ok, err := a.verify(ctx, src, hash, password)
	switch {
	case err != nil:
		att.Release()
		return Identity{}, err
	case !ok || u == nil:
		// An unknown name costs the same verification as a known one
		// (against the dummy), so response time does not reveal which
		// names exist.
		att.Fail()
		return Identity{}, ErrUnauthenticated
	}
	att.Succeed()
	a.remember(key)
	return Identity{Name: u.Name, Method: MethodBasic, Grants: u.Grants}, nil
}

// verify checks password against hash once the verifier admits it. An
// empty hash (a file without users) matches nothing.
func (a *Authenticator) verify(ctx context.Context, src, hash, password string) (bool, error) {
	if hash == "" {
		return false, nil
	}
	release, err := a.verifier.acquire(ctx, src)
	if err != nil {
		return false, err
	}
	defer release()
	return a.check(hash, password)
}

// cacheKeyOf names a (hash, password) pair in the cache without holding
// either.
func (a *Authenticator) cacheKeyOf(hash, password string) [32]byte {
	mac := hmac.New(sha256.New, a.cacheKey[:])
	mac.Write([]byte(hash))
	mac.Write([]byte{0})
	mac.Write([]byte(password))
	var k [32]byte
	copy(k[:], mac.Sum(nil))
	return k
}

func (a *Authenticator) cached(k [32]byte) bool {
	a.cacheMu.Lock()
	exp, hit := a.cache[k]
	a.cacheMu.Unlock()
	return hit && a.now().Before(exp)
}

func (a *Authenticator) remember(k [32]byte) {
	a.cacheMu.Lock()
	if len(a.cache) >= cacheMax {
		clear(a.cache)
	}
	a.cache[k] = a.now().Add(cacheTTL)
	a.cacheMu.Unlock()
}

// refuse counts a credential that was checked and found wrong as a failed
// attempt by src at claim: ErrUnauthenticated, or a *ThrottledError when
// the source may not try now (then nothing was counted).
func (a *Authenticator) refuse(src, claim string) error {
	att, err := a.throttle.Begin(src, claim)
	if err != nil {
		return err
	}
	att.Fail()
	return ErrUnauthenticated
}

// Malformed counts credentials that cannot be right (a Basic header that
// does not decode, an unknown scheme) as a failed attempt by src.
func (a *Authenticator) Malformed(src string) error {
	return a.refuse(src, "malformed")
}

// lookupUser finds the entry for a Basic user name: an exact
// (case-insensitive) match first, so "CORP\alice" may have its own entry;
// otherwise, for "DOMAIN\user", the entry named "user". csrd checks the
// password itself, so the domain adds nothing to the proof; it is kept in
// the audit log through the entry's name.
func (af *File) lookupUser(name string) *User {
	for i := range af.Users {
		if strings.EqualFold(af.Users[i].Name, name) {
			return &af.Users[i]
		}
	}
	if _, bare, ok := strings.Cut(name, `\`); ok && bare != "" {
		for i := range af.Users {
			if strings.EqualFold(af.Users[i].Name, bare) {
				return &af.Users[i]
			}
		}
	}
	return nil
}

// Bearer verifies an API token from source src. A valid token is let
// through even when src is locked out: its secret cannot be guessed. A
// wrong one counts against src and the token id it names.
func (a *Authenticator) Bearer(_ context.Context, src, token string) (Identity, error) {
	id := tokenID(token)
	f, _ := a.current()
	for _, t := range f.Tokens {
		if id == "" || t.ID != id || !tokenMatches(token, t.SHA256) {
			continue
		}
		if !t.Expires.IsZero() && !a.now().Before(t.Expires) {
			break
		}
		a.throttle.Succeed(src, "token:"+id)
		return Identity{Name: t.Name, Method: MethodBearer, Grants: t.Grants}, nil
	}
	return Identity{}, a.refuse(src, "token:"+id)
}

// Certificate maps a client certificate that the TLS layer has already
// verified against the client CA to its entry. A listed certificate is let
// through even when src is locked out (it cannot be guessed); an unlisted
// one counts against src.
func (a *Authenticator) Certificate(_ context.Context, src string, leaf *x509.Certificate) (Identity, error) {
	if leaf == nil {
		return Identity{}, a.refuse(src, "cert:")
	}
	fp := sha256.Sum256(leaf.Raw)
	fpHex := hex.EncodeToString(fp[:])
	f, _ := a.current()
	// A pinned fingerprint is the more specific match: look for it first.
	for _, c := range f.Clients {
		if c.SHA256 != "" && strings.EqualFold(strings.ReplaceAll(c.SHA256, ":", ""), fpHex) {
			return Identity{Name: c.Name, Method: MethodMTLS, Grants: c.Grants}, nil
		}
	}
	for _, c := range f.Clients {
		if c.SHA256 == "" && c.SubjectCN != "" && c.SubjectCN == leaf.Subject.CommonName {
			return Identity{Name: c.Name, Method: MethodMTLS, Grants: c.Grants}, nil
		}
	}
	return Identity{}, a.refuse(src, "cert:"+fpHex)
}

func stampOf(path string) (fileStamp, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, fmt.Errorf("auth: %w", err)
	}
	return fileStamp{mod: st.ModTime(), size: st.Size(), ino: inode(st)}, nil
}
