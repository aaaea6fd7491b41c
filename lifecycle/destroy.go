package lifecycle

import (
	"context"
	"errors"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/store"
)

// destroyKeyMaterial destroys every piece of key material record rec names
// in the token (the key pair and any certificate stored next to it) and is
// the one place that knows what that is. Objects already gone count as
// destroyed (ErrNotFound is not an error), so it is safe to repeat after a
// crash; the caller must not move the record to a terminal state while it
// returns an error. It returns the number of key pairs it destroyed.
// Delete and Reconcile use it; objects are found by label and CKA_ID
// (C_FindObjects), which is not on the success path of Generate.
func (s *Service) destroyKeyMaterial(ctx context.Context, rec *store.KeyRecord) (destroyed int, err error) {
	if len(rec.KeyID) == 0 || rec.KeyLabel == "" {
		return 0, nil
	}
	switch err := s.token.DestroyKey(ctx, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}); {
	case err == nil:
		return 1, nil
	case errors.Is(err, hsm.ErrNotFound):
		return 0, nil
	default:
		return 0, err
	}
}
