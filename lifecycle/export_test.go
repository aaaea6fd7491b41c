package lifecycle

import (
	"context"
	"time"

	"github.com/csrd/csrd/store"
)

// SetAfterStep installs the test hook called after each Generate step.
func (s *Service) SetAfterStep(f func(step string)) { s.afterStep = f }

// SetAbandonRetry shortens the first pause between retries of a failed
// clean-up, so tests need not wait for the production back-off.
func (s *Service) SetAbandonRetry(first time.Duration) { s.abandonRetryDelay = first }

// DestroyKeyMaterial exposes destroyKeyMaterial to the tests.
func (s *Service) DestroyKeyMaterial(ctx context.Context, rec *store.KeyRecord) (int, error) {
	return s.destroyKeyMaterial(ctx, rec)
}

// SetBackoff shortens the pool's back-off so tests need not wait seconds.
func (p *TokenPool) SetBackoff(lo, hi time.Duration) { p.minBackoff, p.maxBackoff = lo, hi }
