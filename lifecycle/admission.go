package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/store"
)

// Admission. csrd starts with every token of the pool withheld
// (TokenPool.Withhold): a token takes new keys only once the records on it
// are reconciled (Admit), so no Generate lands on a token whose crash
// leftovers are not cleaned up. AdmitConnected does that, before anything
// is served, for the tokens connected at start; AdmitLate, in the
// background, for the others once they connect.

// AdmitConnected reconciles and admits every token of the pool that is
// connected now. It runs before anything is served, so nothing can be in
// progress and every interrupted operation is finished. It returns the
// tokens still waiting for their connection, in configuration order; a
// token that fails while being reconciled (it went away again) joins them.
// Any other failure stops start-up.
func (s *Service) AdmitConnected(ctx context.Context) ([]Token, error) {
	var waiting []Token
	for _, t := range s.tokens.Tokens() {
		if t.Healthy() != nil {
			waiting = append(waiting, t)
			continue
		}
		if _, err := s.Admit(ctx, t); err != nil {
			if t.Healthy() != nil || errors.Is(err, hsm.ErrUnavailable) {
				s.log.Warn().Err(err).Str("token", t.Label()).Msg("token lost during start-up reconciliation; waiting for it")
				waiting = append(waiting, t)
				continue
			}
			return nil, fmt.Errorf("lifecycle: start-up reconciliation of token %q: %w", t.Label(), err)
		}
	}
	return waiting, nil
}

// AdmitLate admits each token of waiting once it has connected, each in a
// goroutine of its own, until ctx ends: it waits for Connected, reconciles
// the token and admits it (Admit). A reconciliation that fails (the token
// went away again) is retried after a back-off that doubles from
// hsm.DefaultReconnectMin to maxBackoff. admitted runs after each admission
// with the number of tokens still waiting (0: the last one is in). It
// returns at once.
func (s *Service) AdmitLate(ctx context.Context, waiting []Token, maxBackoff time.Duration, admitted func(tok Token, left int)) {
	var (
		mu   sync.Mutex
		left = len(waiting)
	)
	for _, t := range waiting {
		go func() {
			if !s.admitWhenConnected(ctx, t, maxBackoff) {
				return
			}
			mu.Lock()
			left--
			n := left
			mu.Unlock()
			admitted(t, n)
		}()
	}
}

// admitWhenConnected is AdmitLate for one token; false when ctx ended first.
func (s *Service) admitWhenConnected(ctx context.Context, tok Token, maxBackoff time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-tok.Connected():
	}
	backoff := hsm.DefaultReconnectMin
	for {
		_, err := s.Admit(ctx, tok)
		if err == nil {
			return true
		}
		s.log.Warn().Err(err).Str("token", tok.Label()).Dur("retry_in", backoff).Msg("reconciliation of a newly connected token failed; retrying")
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// ProfileRecords is where admission records each token's profile
// (*store.Store: token_profiles).
type ProfileRecords interface {
	SaveTokenProfile(ctx context.Context, p *store.TokenProfile) error
}

// recordProfile records the profile t learned at its connection, by its
// label and serial, for operators (csrctl token probe -recorded). csrd
// never reads it back, so failing to record it is logged, not fatal.
func (s *Service) recordProfile(ctx context.Context, t Token) {
	p := t.Profile()
	if p == nil {
		return
	}
	doc, err := json.Marshal(p)
	if err == nil {
		err = s.profiles.SaveTokenProfile(ctx, &store.TokenProfile{TokenLabel: t.Label(), TokenSerial: t.Serial(), LearnedBy: "csrd", Profile: doc})
	}
	if err != nil {
		s.log.Error().Err(err).Str("token", t.Label()).Msg("the token's profile could not be recorded")
	}
}
