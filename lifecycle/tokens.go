package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/store"
)

// TokenPool is the set of tokens csrd keeps keys on. New keys go to the
// least busy healthy token; every later operation on a key uses the token
// its record names (by serial number, or by label for records without
// one). A token whose operation fails with a token-level error (removed,
// read-only, full, logged out: see tokenFailure) is taken out of rotation
// for a back-off that doubles with each failure (1 s to 30 s) and is
// re-admitted when it has recovered: after the back-off the next Generate
// tries it, and if that fails the request moves on to another token while
// this one goes back out for longer. A token whose Healthy says it is down
// is skipped.
//
// One token is a pool of one: Generate then behaves as without a pool.
type TokenPool struct {
	log     zerolog.Logger
	now     func() time.Time
	mu      sync.Mutex
	members []*member
	next    int // rotates the first candidate, so ties spread evenly

	minBackoff, maxBackoff time.Duration
}

type member struct {
	tok       Token
	withheld  bool          // not yet admitted: reconciliation first (Admit)
	busy      int           // Generates running on it
	downUntil time.Time     // out of rotation until then
	backoff   time.Duration // last back-off; 0 while healthy
}

// Back-off bounds for a failed token.
const (
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = 30 * time.Second
)

// NewTokenPool returns a pool of tokens, which must have distinct serial
// numbers and labels: a record names its token by them.
func NewTokenPool(log zerolog.Logger, tokens ...Token) (*TokenPool, error) {
	if len(tokens) == 0 {
		return nil, errors.New("lifecycle: token pool: no tokens")
	}
	p := &TokenPool{log: log, now: time.Now, minBackoff: DefaultMinBackoff, maxBackoff: DefaultMaxBackoff}
	for _, t := range tokens {
		for _, m := range p.members {
			// A token not connected yet has no serial; its label is enough.
			if m.tok.Serial() != "" && m.tok.Serial() == t.Serial() || m.tok.Label() == t.Label() {
				return nil, fmt.Errorf("lifecycle: token pool: tokens %q (serial %s) and %q (serial %s) are not distinct",
					m.tok.Label(), m.tok.Serial(), t.Label(), t.Serial())
			}
		}
		p.members = append(p.members, &member{tok: t})
	}
	return p, nil
}

// Tokens returns the pool's tokens in configuration order.
func (p *TokenPool) Tokens() []Token {
	out := make([]Token, len(p.members))
	for i, m := range p.members {
		out[i] = m.tok
	}
	return out
}

// holding returns the token a record's key lives on: the one with its
// serial, else (records without one) with its label, else (records with
// neither) the first. A key on a token not in the pool is an *Error of
// class ErrConflict: csrd cannot reach it.
func (p *TokenPool) holding(id int64, label, serial string) (Token, error) {
	for _, m := range p.members {
		if serial != "" && m.tok.Serial() == serial || serial == "" && m.tok.Label() == label {
			return m.tok, nil
		}
	}
	// A token that has never been connected (csrd started without it) has
	// no serial yet: a record on its label is its, and operations on it
	// fail as unavailable until it connects — then the serial decides.
	if m := p.unconnected(label); m != nil && serial != "" {
		return m.tok, nil
	}
	if serial == "" && label == "" {
		return p.members[0].tok, nil
	}
	return nil, &ElsewhereError{ID: id, TokenLabel: label, TokenSerial: serial}
}

// unconnected returns the member labelled label that has no serial yet.
func (p *TokenPool) unconnected(label string) *member {
	for _, m := range p.members {
		if m.tok.Label() == label && m.tok.Serial() == "" {
			return m
		}
	}
	return nil
}

// reaches reports whether a record's key (on token label, serial) is on a
// token of the pool, or may be: one not connected yet with that label.
func (p *TokenPool) reaches(label, serial string) bool {
	return serial == "" || p.hasSerial(serial) || p.unconnected(label) != nil
}

// Withhold keeps t out of rotation until Admit: csrd started without it
// (its token could not be opened), and its records must be reconciled
// before Generate may place keys on it.
func (p *TokenPool) Withhold(t Token) { p.setWithheld(t, true) }

// Admitted reports whether t is in rotation (or on back-off), i.e. not
// withheld.
func (p *TokenPool) Admitted(t Token) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.memberOf(t)
	return m != nil && !m.withheld
}

func (p *TokenPool) admit(t Token) { p.setWithheld(t, false) }

func (p *TokenPool) setWithheld(t Token, withheld bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := p.memberOf(t); m != nil {
		m.withheld = withheld
	}
}

// memberOf returns t's member, nil if t is not in the pool; p.mu is held.
func (p *TokenPool) memberOf(t Token) *member {
	for _, m := range p.members {
		if m.tok == t {
			return m
		}
	}
	return nil
}

// admitted returns the tokens not withheld, in configuration order.
func (p *TokenPool) admitted() []Token {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Token
	for _, m := range p.members {
		if !m.withheld {
			out = append(out, m.tok)
		}
	}
	return out
}

// unavailable explains why no token could take a new key: every one is
// withheld, and each says why.
func (p *TokenPool) unavailable() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var why []string
	for _, m := range p.members {
		reason := "connected; being reconciled before it takes new keys"
		if err := m.tok.Healthy(); err != nil {
			reason = hsm.Reason(err)
		}
		if !strings.HasPrefix(reason, "token ") {
			reason = fmt.Sprintf("token %q: %s", m.tok.Label(), reason)
		}
		why = append(why, reason)
	}
	return newErr(ErrUnavailable, "no HSM token can take new keys (%s)", strings.Join(why, "; "))
}

// hasSerial reports whether a token of the pool has serial number serial.
func (p *TokenPool) hasSerial(serial string) bool {
	for _, m := range p.members {
		if m.tok.Serial() == serial {
			return true
		}
	}
	return false
}

// has reports whether a record on label/serial belongs to tok.
func (p *TokenPool) has(tok Token, id int64, label, serial string) bool {
	t, err := p.holding(id, label, serial)
	return err == nil && t == tok
}

// pick chooses the token for a new key among those not in tried: the
// healthy one with the fewest Generates running (ties rotate). When none is
// healthy it takes the one whose back-off ends first: a request is better
// tried than refused, and it fails fast if the token is still down. done
// must be called with the outcome.
func (p *TokenPool) pick(tried []Token) (Token, func(error)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	var best, fallback *member
	n := len(p.members)
	for i := range n {
		m := p.members[(p.next+i)%n]
		if m.withheld || slices.Contains(tried, m.tok) {
			continue
		}
		if fallback == nil || m.downUntil.Before(fallback.downUntil) {
			fallback = m
		}
		if now.Before(m.downUntil) || m.tok.Healthy() != nil {
			continue
		}
		if best == nil || m.busy < best.busy {
			best = m
		}
	}
	p.next++
	if best == nil {
		best = fallback
	}
	if best == nil {
		return nil, nil
	}
	best.busy++
	return best.tok, func(err error) { p.done(best, err) }
}

func (p *TokenPool) done(m *member, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m.busy--
	switch {
	case err == nil && m.backoff > 0:
		m.backoff, m.downUntil = 0, time.Time{}
		p.log.Info().Str("token", m.tok.Label()).Str("serial", m.tok.Serial()).Msg("token back in rotation")
	case tokenFailure(err):
		now := p.now()
		if now.Before(m.downUntil) {
			// Already out of rotation: this operation began before, and its
			// failure says nothing new (the many in flight when a token
			// breaks must not push the back-off to its cap at once).
			return
		}
		// In rotation, or back on trial after a back-off that did not cure it.
		m.backoff = min(max(p.minBackoff, 2*m.backoff), p.maxBackoff)
		m.downUntil = now.Add(m.backoff)
		p.log.Warn().Err(err).Str("token", m.tok.Label()).Str("serial", m.tok.Serial()).
			Dur("retry_in", m.backoff).Msg("token out of rotation")
	}
}

// tokenFailure reports whether err says the token itself is in trouble
// rather than the request: every hsm error except an unsupported key,
// a request the token refused, a missing object and a cancelled call.
func tokenFailure(err error) bool {
	var he *hsm.Error
	if err == nil || !errors.As(err, &he) {
		return false
	}
	return !errors.Is(err, hsm.ErrUnsupported) && !errors.Is(err, hsm.ErrRefused) && !errors.Is(err, hsm.ErrNotFound) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// tokenFor returns the token record rec's key lives on.
func (s *Service) tokenFor(rec *store.KeyRecord) (Token, error) {
	return s.tokens.holding(rec.ID, rec.TokenLabel, rec.TokenSerial)
}
