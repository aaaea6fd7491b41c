package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

// Two tokens of the test config used only by the pool tests.
const (
	poolLabelA = "csrd-pool-a"
	poolLabelB = "csrd-pool-b"
)

func openPool(t *testing.T) (*lifecycle.TokenPool, *hsm.Token, *hsm.Token) {
	t.Helper()
	a, err := openToken(testTok.Module, poolLabelA, testTok.PIN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err := openToken(testTok.Module, poolLabelB, testTok.PIN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	pool, err := lifecycle.NewTokenPool(testLog, lifecycle.HSMToken{Token: a}, lifecycle.HSMToken{Token: b})
	if err != nil {
		t.Fatal(err)
	}
	pool.SetBackoff(20*time.Millisecond, 100*time.Millisecond)
	return pool, a, b
}

func poolRequest(i int) lifecycle.GenerateRequest {
	return lifecycle.GenerateRequest{
		Subject: fmt.Sprintf("CN=pool-%d.example.com", i),
		Key:     policy.KeyRequest{KeyType: "ECC", KeyLength: 256},
	}
}

// onToken asserts that the key of record id is on want (both halves) and
// not on other, and that the record names want.
func onToken(t *testing.T, db *store.Store, id int64, want, other *hsm.Token) {
	t.Helper()
	ctx := context.Background()
	rec, err := db.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if rec.TokenLabel != want.Label() || rec.TokenSerial != want.Serial() {
		t.Errorf("record %d names token %q/%s, want %q/%s", id, rec.TokenLabel, rec.TokenSerial, want.Label(), want.Serial())
	}
	ref := hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}
	if cs, err := want.ObjectsOf(ctx, ref); err != nil || len(cs) < 2 {
		t.Errorf("record %d: token %s holds %v (%v), want the key pair", id, want.Label(), cs, err)
	}
	if cs, err := other.ObjectsOf(ctx, ref); err != nil || len(cs) != 0 {
		t.Errorf("record %d: token %s also holds %v (%v)", id, other.Label(), cs, err)
	}
}

// TestPoolSpreadsAndRemembers: new keys go to both tokens, each record
// names the token that holds its key, and a later Delete and Reconcile use
// that token.
func TestPoolSpreadsAndRemembers(t *testing.T) {
	pool, a, b := openPool(t)
	db := openStore(t, filepath.Join(t.TempDir(), "csrd.db"))
	svc := lifecycle.NewPooled(pool, db, policy.Default(), testLog)
	ctx := context.Background()

	const n = 8
	ids := make([]int64, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := svc.Generate(ctx, poolRequest(i))
			if err == nil {
				ids[i] = res.ID
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	perToken, err := db.CountByToken(ctx, store.StatePending)
	if err != nil {
		t.Fatal(err)
	}
	if perToken[a.Label()] == 0 || perToken[b.Label()] == 0 || perToken[a.Label()]+perToken[b.Label()] != n {
		t.Fatalf("keys per token %v, want %d spread over both", perToken, n)
	}
	var onB int64
	for _, id := range ids {
		rec, err := db.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want, other := a, b
		if rec.TokenLabel == b.Label() {
			want, other, onB = b, a, id
		}
		onToken(t, db, id, want, other)
	}

	// Delete finds the key on the token its record names.
	if err := svc.Delete(ctx, onB, nil, nil); err != nil {
		t.Fatalf("delete %d: %v", onB, err)
	}
	rec, err := db.Get(ctx, onB)
	if err != nil {
		t.Fatal(err)
	}
	if cs, err := b.ObjectsOf(ctx, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}); err != nil || len(cs) != 0 {
		t.Errorf("after delete, token %s still holds %v (%v)", b.Label(), cs, err)
	}

	// Reconcile checks each key on its own token: nothing lost, no orphans.
	rep, err := svc.Reconcile(ctx, lifecycle.ReconcileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Lost) != 0 || len(rep.Orphans) != 0 || rep.OtherToken != 0 || rep.Records != n-1 {
		t.Errorf("reconcile over the pool: %+v, want %d records, none lost, no orphans", rep, n-1)
	}
}

// TestPoolFailover makes one of two tokens unusable while Generates run:
// none of them fails, keys go to the healthy token meanwhile, and the
// repaired token is back in rotation afterwards.
func TestPoolFailover(t *testing.T) {
	pool, a, b := openPool(t)
	db := openStore(t, filepath.Join(t.TempDir(), "csrd.db"))
	svc := lifecycle.NewPooled(pool, db, policy.Default(), testLog)
	ctx := context.Background()
	dir, err := testTok.StoreDir(b.Label())
	if err != nil {
		t.Fatal(err)
	}

	// Read-only (immutable) object directory: SoftHSM can neither create
	// nor remove object files, as on a token that is full or write-protected.
	if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
		t.Fatalf("chattr +i %s (the test needs root on a file system with attributes, e.g. ext4): %v %s", dir, err, out)
	}
	restore := sync.OnceFunc(func() {
		if out, err := exec.Command("chattr", "-i", dir).CombinedOutput(); err != nil {
			t.Errorf("chattr -i %s: %v %s", dir, err, out)
		}
	})
	t.Cleanup(restore)

	run := func(from, n int) []int64 {
		t.Helper()
		ids := make([]int64, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := svc.Generate(ctx, poolRequest(from+i))
				if err == nil {
					ids[i] = res.ID
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("Generate failed while a pool token was down: %v", err)
		}
		return ids
	}
	for _, id := range run(0, 6) {
		onToken(t, db, id, a, b)
	}
	// B was tried and failed (its attempts are failed records, or
	// "generating" ones left for reconciliation when B could not even be
	// cleaned up); the clients never saw it.
	tried := 0
	for _, st := range []store.State{store.StateFailed, store.StateGenerating} {
		n, err := db.CountByToken(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		tried += n[b.Label()]
	}
	if tried == 0 {
		t.Fatalf("no Generate was attempted on the broken token %s: the failover was not exercised", b.Label())
	}

	restore()
	// Back-off is 20-100 ms here: within a few rounds B gets keys again.
	deadline := time.Now().Add(30 * time.Second)
	for round := 1; ; round++ {
		perToken := map[string]int{}
		for _, id := range run(100*round, 4) {
			rec, err := db.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			perToken[rec.TokenLabel]++
		}
		if perToken[b.Label()] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token %s not back in rotation 30s after it recovered", b.Label())
		}
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
}
