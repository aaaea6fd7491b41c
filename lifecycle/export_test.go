package lifecycle

import (
	"context"

	"github.com/csrd/csrd/store"
)

// SetAfterStep installs the test hook called after each Generate step.
func (s *Service) SetAfterStep(f func(step string)) { s.afterStep = f }

// DestroyKeyMaterial exposes destroyKeyMaterial to the tests.
func (s *Service) DestroyKeyMaterial(ctx context.Context, rec *store.KeyRecord) (int, error) {
	return s.destroyKeyMaterial(ctx, rec)
}
