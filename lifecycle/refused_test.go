package lifecycle_test

import (
	"context"
	"crypto"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

// refusingToken is a real token whose key generations the token refuses,
// as tpm2-pkcs11 refuses a template it cannot map (CKR_GENERAL_ERROR while
// it otherwise answers, which hsm classes ErrRefused).
type refusingToken struct {
	lifecycle.Token
	calls atomic.Int32
}

func (r *refusingToken) GenerateKeyPair(context.Context, hsm.KeySpec, hsm.KeyRef) (crypto.Signer, error) {
	r.calls.Add(1)
	return nil, &hsm.Error{Op: "generate key pair", Token: r.Label(), CKR: 0x5, Err: hsm.ErrRefused}
}

// TestRefusalKeepsTokenInRotation: a request the token refuses fails at
// once with the refusal, nothing is kept, and the token is not taken out
// of rotation as if it had failed: the next requests still reach it.
func TestRefusalKeepsTokenInRotation(t *testing.T) {
	_, a, b := openPool(t)
	refusing := &refusingToken{Token: lifecycle.HSMToken{Token: a}}
	pool, err := lifecycle.NewTokenPool(testLog, refusing, lifecycle.HSMToken{Token: b})
	if err != nil {
		t.Fatal(err)
	}
	pool.SetBackoff(time.Minute, time.Minute) // a token failure would keep a out for the whole test
	db := openStore(t, filepath.Join(t.TempDir(), "csrd.db"))
	svc := lifecycle.NewPooled(pool, db, policy.Default(), testLog)
	ctx := context.Background()

	refused := 0
	for i := range 6 {
		_, err := svc.Generate(ctx, poolRequest(i))
		switch {
		case errors.Is(err, hsm.ErrRefused):
			refused++
		case err != nil:
			t.Fatalf("Generate %d: %v", i, err)
		}
	}
	if n := refusing.calls.Load(); n < 2 || int(n) != refused {
		t.Errorf("the refusing token was asked %d times and %d requests were refused; want it asked again after refusing", n, refused)
	}
	failed, err := db.ListByState(ctx, store.StateFailed)
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != refused {
		t.Errorf("%d failed records, want one per refusal (%d)", len(failed), refused)
	}
	for _, rec := range failed {
		if rec.TokenLabel != a.Label() {
			t.Errorf("record %d failed on %s", rec.ID, rec.TokenLabel)
		}
		if objs, err := a.ObjectsOf(ctx, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}); err != nil || len(objs) != 0 {
			t.Errorf("refused record %d left %v on the token (%v)", rec.ID, objs, err)
		}
	}
}
