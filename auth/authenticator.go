package auth

import (
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
	// maxVerifies bounds concurrent slow hash verifications so a burst of
	// Basic requests cannot allocate argon2's memory many times over.
	maxVerifies = 2
)

// Authenticator checks credentials against the auth file.
type Authenticator struct {
	path string
	log  zerolog.Logger
	now  func() time.Time

	mu        sync.Mutex
	file      *File
	stamp     fileStamp
	lastCheck time.Time

	cacheKey  [32]byte
	cacheMu   sync.Mutex
	cache     map[[32]byte]time.Time
	verifySem chan struct{}
}

type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

// Open loads the auth file at path; a missing or invalid file is an error,
// so csrd never starts with authentication silently off.
func Open(path string, log zerolog.Logger) (*Authenticator, error) {
	a := &Authenticator{
		path:      path,
		log:       log.With().Str("component", "auth").Logger(),
		now:       time.Now,
		cache:     map[[32]byte]time.Time{},
		verifySem: make(chan struct{}, maxVerifies),
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
	a.file, a.stamp, a.lastCheck = f, st, a.now()
	a.log.Info().Str("file", path).Int("users", len(f.Users)).Int("tokens", len(f.Tokens)).
		Int("clients", len(f.Clients)).Msg("auth: file loaded")
	return a, nil
}

// current returns the file in force, re-reading it when it changed.
func (a *Authenticator) current() *File {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if now.Sub(a.lastCheck) < reloadEvery {
		return a.file
	}
	a.lastCheck = now
	st, err := stampOf(a.path)
	if err != nil {
		a.log.Error().Err(err).Msg("auth: cannot stat auth file; keeping the loaded version")
		return a.file
	}
	if st == a.stamp {
		return a.file
	}
	f, err := LoadFile(a.path)
	if err != nil {
		a.log.Error().Err(err).Msg("auth: auth file changed but is invalid; keeping the loaded version")
		return a.file
	}
	a.file, a.stamp = f, st
	a.log.Info().Int("users", len(f.Users)).Int("tokens", len(f.Tokens)).Int("clients", len(f.Clients)).
		Msg("auth: file reloaded")
	return a.file
}

// Basic verifies a Basic-auth user name and password. Keyfactor clients send
// "DOMAIN\user"; see lookupUser for how the domain is matched.
func (a *Authenticator) Basic(ctx context.Context, name, password string) (Identity, error) {
	f := a.current()
	u := f.lookupUser(name)
	if u == nil {
		// Spend the same time as for a known user, so response time does
		// not reveal which names exist.
		if len(f.Users) > 0 {
			_, _ = a.verify(ctx, f.Users[0].PasswordHash, password)
		}
		return Identity{}, ErrUnauthenticated
	}
	ok, err := a.verify(ctx, u.PasswordHash, password)
	if err != nil {
		return Identity{}, err
	}
	if !ok {
		return Identity{}, ErrUnauthenticated
	}
	return Identity{Name: u.Name, Method: MethodBasic, Grants: u.Grants}, nil
}

// verify checks password against hash, through the cache.
func (a *Authenticator) verify(ctx context.Context, hash, password string) (bool, error) {
	mac := hmac.New(sha256.New, a.cacheKey[:])
	mac.Write([]byte(hash))
	mac.Write([]byte{0})
	mac.Write([]byte(password))
	var k [32]byte
	copy(k[:], mac.Sum(nil))
	now := a.now()
	a.cacheMu.Lock()
	exp, hit := a.cache[k]
	a.cacheMu.Unlock()
	if hit && now.Before(exp) {
		return true, nil
	}
	select {
	case a.verifySem <- struct{}{}:
	case <-ctx.Done():
		return false, fmt.Errorf("auth: %w", ctx.Err())
	}
	ok, err := VerifyPassword(hash, password)
	<-a.verifySem
	if err != nil || !ok {
		return false, err
	}
	a.cacheMu.Lock()
	if len(a.cache) >= cacheMax {
		clear(a.cache)
	}
	a.cache[k] = now.Add(cacheTTL)
	a.cacheMu.Unlock()
	return true, nil
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

// Bearer verifies an API token.
func (a *Authenticator) Bearer(_ context.Context, token string) (Identity, error) {
	id := tokenID(token)
	if id == "" {
		return Identity{}, ErrUnauthenticated
	}
	f := a.current()
	for _, t := range f.Tokens {
		if t.ID != id {
			continue
		}
		if !tokenMatches(token, t.SHA256) {
			return Identity{}, ErrUnauthenticated
		}
		if !t.Expires.IsZero() && !a.now().Before(t.Expires) {
			return Identity{}, ErrUnauthenticated
		}
		return Identity{Name: t.Name, Method: MethodBearer, Grants: t.Grants}, nil
	}
	return Identity{}, ErrUnauthenticated
}

// Certificate maps a client certificate that the TLS layer has already
// verified against the client CA to its entry.
func (a *Authenticator) Certificate(_ context.Context, leaf *x509.Certificate) (Identity, error) {
	if leaf == nil {
		return Identity{}, ErrUnauthenticated
	}
	fp := sha256.Sum256(leaf.Raw)
	fpHex := hex.EncodeToString(fp[:])
	f := a.current()
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
	return Identity{}, ErrUnauthenticated
}

func stampOf(path string) (fileStamp, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, fmt.Errorf("auth: %w", err)
	}
	return fileStamp{mod: st.ModTime(), size: st.Size(), ino: inode(st)}, nil
}
