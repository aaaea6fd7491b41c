package lifecycle

import (
	"context"
	"errors"
	"fmt"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/store"
)

// SealedSeeds erases a record's sealed alternative seed, the one database
// write of destroyKeyMaterial: without the seal the key cannot be derived
// again.
type SealedSeeds interface {
	ClearSealedSeed(ctx context.Context, id int64) error
}

// destroyKeyMaterial destroys every piece of key material record rec names,
// and is the one place that knows what that is:
//
//   - the primary key pair in the token (rec.KeyLabel, rec.KeyID);
//   - a token-resident alternative key pair (rec.AltKeyLabel, rec.AltKeyID);
//   - a sealed alternative seed, by erasing it from the record (without the
//     seal the key cannot be derived again, so that destroys it).
//
// Objects already gone count as destroyed (ErrNotFound is not an error), so
// it is safe to repeat after a crash. Every part is attempted even if one
// fails; the errors are joined and the caller must not move the record to a
// terminal state while any remain. It returns the number of token key
// pairs it destroyed. Generate's failure path, Reconcile and Delete use it.
// Token objects are found by label and CKA_ID (C_FindObjects): it is not on
// the success path of any request.
func (s *Service) destroyKeyMaterial(ctx context.Context, rec *store.KeyRecord) (destroyed int, err error) {
	var errs []error
	refs := []hsm.KeyRef{}
	if len(rec.KeyID) > 0 && rec.KeyLabel != "" {
		refs = append(refs, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel})
	}
	switch rec.AltKeyStorage {
	case store.AltStorageToken:
		refs = append(refs, hsm.KeyRef{ID: rec.AltKeyID, Label: rec.AltKeyLabel})
	case store.AltStorageSealed:
		if err := s.seeds.ClearSealedSeed(ctx, rec.ID); err != nil {
			errs = append(errs, fmt.Errorf("lifecycle: erase sealed alternative seed of record %d: %w", rec.ID, err))
		}
	}
	if len(refs) == 0 {
		return 0, errors.Join(errs...)
	}
	tok, err := s.tokenFor(rec)
	if err != nil {
		return 0, errors.Join(append(errs, err)...)
	}
	for _, ref := range refs {
		switch err := tok.DestroyKey(ctx, ref); {
		case err == nil:
			destroyed++
		case errors.Is(err, hsm.ErrNotFound):
		default:
			errs = append(errs, err)
		}
	}
	return destroyed, errors.Join(errs...)
}
