package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"sync"
	"testing"
)

// TestSpendConnectsAgainAfterFirstLoad: a load that fails as the login's
// first cannot be helped by another logout, so the next re-login connects
// again; a later one only logs in afresh. A token without a bound is left
// as it is.
func TestSpendConnectsAgainAfterFirstLoad(t *testing.T) {
	for _, tc := range []struct {
		name         string
		bound, used  int
		wantFull     bool
		wantUsedFull bool
	}{
		{"first load of the login", 6, 1, true, true},
		{"nothing counted yet", 6, 0, true, true},
		{"a later load", 6, 4, false, true},
		{"no bound", 0, 1, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g gate
			g.loads.bound, g.loads.used = tc.bound, tc.used
			g.spend()
			if got := g.loads.used == tc.bound && tc.bound > 0; got != tc.wantUsedFull {
				t.Errorf("count after spend %d of %d", g.loads.used, tc.bound)
			}
			if got := g.takeFull(); got != tc.wantFull {
				t.Errorf("takeFull = %v, want %v", got, tc.wantFull)
			}
			if g.takeFull() {
				t.Error("takeFull reported twice")
			}
		})
	}
}

// TestKeysPerLoginOnTPM: tpm2-pkcs11 keeps every key it generated or
// used loaded in the TPM until logout, and the fixture's tpm2-abrmd (at
// its default of 27 transient objects per client) refuses more; csrd
// logs out and in again before the bound, so 60 P-256 keys are made in
// one process, concurrently too, and the first key still signs after the
// re-logins.
func TestKeysPerLoginOnTPM(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the TPM token is left out")
	}
	tp, err := started("tpm", startTPM)
	if err != nil {
		t.Fatalf("TPM token: %v", err)
	}
	tok := tp.tok
	if p := tok.Profile(); p.KeysPerLogin != DefaultTPMKeysPerLogin || tok.KeysPerLogin() != DefaultTPMKeysPerLogin {
		t.Fatalf("profile (library %q) says %d keys per login, token %d; want %d",
			p.Library, p.KeysPerLogin, tok.KeysPerLogin(), DefaultTPMKeysPerLogin)
	}
	// Leave the shared token as fresh as a new login: later tests load
	// keys behind its count (raw test calls).
	t.Cleanup(tok.gate.spend)
	ctx := context.Background()
	spec := KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}
	before := tok.Relogins()
	var keys []*Key
	gen := func() *Key {
		k, err := tok.GenerateKeyPair(ctx, spec, refOn(t, tok, "loads"))
		if err != nil {
			t.Errorf("after %d re-logins: %v", tok.Relogins()-before, err)
			return nil
		}
		destroyAtEnd(t, k)
		return k
	}
	for range 30 {
		if keys = append(keys, gen()); keys[len(keys)-1] == nil {
			return
		}
	}
	// Concurrently, signing older keys between generations.
	olds := keys
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				k := gen()
				if k == nil {
					return
				}
				signed(t, olds[(w*8+i)%len(olds)])
				mu.Lock()
				keys = append(keys, k)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	signed(t, keys[0])
	relogins := tok.Relogins() - before
	t.Logf("%d keys, %d re-logins", len(keys), relogins)
	if relogins < 3 {
		t.Errorf("%d re-logins for %d keys; want several", relogins, len(keys))
	}
}

// signed signs with k and verifies the signature.
func signed(t *testing.T, k *Key) {
	t.Helper()
	d := sha256.Sum256([]byte("objects per login"))
	sig, err := k.Sign(nil, d[:], crypto.SHA256)
	if err != nil {
		t.Errorf("sign with %s: %v", k.Ref(), err)
		return
	}
	if !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), d[:], sig) {
		t.Errorf("signature of %s does not verify", k.Ref())
	}
}
