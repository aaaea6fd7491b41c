package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestOrderLifecycle(t *testing.T) { forEachBackend(t, testOrderLifecycle) }

func testOrderLifecycle(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	id := newKeyIn(t, s, StatePending)

	o, created, err := s.OpenOrder(ctx, id, "pebble", 0)
	if err != nil || !created || o.State != OrderOpen || o.RecordID != id || o.CA != "pebble" {
		t.Fatalf("OpenOrder = %+v, %v, %v", o, created, err)
	}
	// One open order per key: a second caller gets the same one.
	again, created, err := s.OpenOrder(ctx, id, "pebble", 0)
	if err != nil || created || again.ID != o.ID {
		t.Fatalf("OpenOrder again = %+v, %v, %v; want order %d", again, created, err, o.ID)
	}
	if err := s.SetOrderURL(ctx, o.ID, "https://ca/order/1"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOrderURL(ctx, o.ID, "https://ca/order/1"); err != nil {
		t.Errorf("the same URL again: %v", err)
	}
	if err := s.SetOrderURL(ctx, o.ID, "https://ca/order/2"); !errors.Is(err, ErrConflict) {
		t.Errorf("another URL: %v, want ErrConflict", err)
	}
	if err := s.NoteOrderError(ctx, o.ID, "CA unreachable"); err != nil {
		t.Fatal(err)
	}
	if open, _ := s.OpenOrders(ctx); len(open) != 1 || open[0].URL != "https://ca/order/1" || open[0].Error != "CA unreachable" {
		t.Errorf("OpenOrders = %+v", open)
	}
	renewAt := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.CloseOrder(ctx, o.ID, Closing{RenewAt: renewAt}); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseOrder(ctx, o.ID, Closing{}); !errors.Is(err, ErrConflict) {
		t.Errorf("CloseOrder twice: %v, want ErrConflict", err)
	}
	got, _ := s.LatestOrder(ctx, id)
	r, err := s.GetRenewal(ctx, id)
	if got.State != OrderMarried || got.Error != "" || err != nil || r.State != RenewalScheduled || !r.RenewAt.Equal(renewAt) || r.HookPending {
		t.Fatalf("after CloseOrder: order %+v, renewal %+v, %v", got, r, err)
	}
	if err := s.FailOrder(ctx, o.ID, "x"); !errors.Is(err, ErrConflict) {
		t.Errorf("FailOrder of a closed order: %v", err)
	}
	if _, err := s.GetOrder(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetOrder(unknown) = %v", err)
	}
	if _, err := s.GetRenewal(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetRenewal(unknown) = %v", err)
	}
}

// TestRenewalLifecycle walks a certificate through renewal: one claim wins
// among racing renewers, the new key is noted once, closing the new order
// marks the old certificate renewed with its retirement time.
func TestRenewalLifecycle(t *testing.T) { forEachBackend(t, testRenewalLifecycle) }

func testRenewalLifecycle(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	old := enrolled(t, s, 0)

	var wins int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.ClaimRenewal(ctx, old)
			var se *RenewalStateError
			switch {
			case err == nil:
				mu.Lock()
				wins++
				mu.Unlock()
			case !errors.As(err, &se) || se.State != RenewalRenewing:
				t.Errorf("losing claim: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d claims won, want exactly 1", wins)
	}
	next := newKeyIn(t, s, StatePending)
	if err := s.SetRenewalKey(ctx, old, next); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRenewalKey(ctx, old, next+1); !errors.Is(err, ErrConflict) {
		t.Errorf("a second new key: %v, want ErrConflict", err)
	}
	later := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if err := s.DeferRenewal(ctx, old, RenewalRenewing, "CA down", later); err != nil {
		t.Fatal(err)
	}
	o, _, _ := s.OpenOrder(ctx, next, "pebble", old)
	retire := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := s.CloseOrder(ctx, o.ID, Closing{RetireOldAt: retire, Hook: true}); err != nil {
		t.Fatal(err)
	}
	r, _ := s.GetRenewal(ctx, old)
	if r.State != RenewalRenewed || r.NewRecordID != next || !r.RetireAt.Equal(retire) || r.LastError != "" || r.Attempts != 1 {
		t.Fatalf("old renewal: %+v", r)
	}
	hooks, _ := s.PendingHooks(ctx)
	if len(hooks) != 1 || hooks[0].RecordID != next {
		t.Fatalf("PendingHooks = %+v", hooks)
	}
	for want := 1; want <= 2; want++ {
		if err := s.HookFailed(ctx, next, "exit 1", later); err != nil {
			t.Fatal(err)
		}
		if r, _ := s.GetRenewal(ctx, next); r.Attempts != want {
			t.Errorf("after %d failed hooks Attempts = %d, want %d (the back-off counts them)", want, r.Attempts, want)
		}
	}
	if err := s.HookDone(ctx, next); err != nil {
		t.Fatal(err)
	}
	if hooks, _ := s.PendingHooks(ctx); len(hooks) != 0 {
		t.Errorf("PendingHooks after HookDone = %+v", hooks)
	}
	if r, _ := s.GetRenewal(ctx, next); r.Attempts != 0 {
		t.Errorf("after the hook succeeded Attempts = %d, want 0: its renewal starts afresh", r.Attempts)
	}
	if err := s.MarkRenewalRetired(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := s.ForceRenewal(ctx, old); !errors.Is(err, ErrConflict) {
		t.Errorf("ForceRenewal of a retired certificate: %v", err)
	}
	if err := s.ForceRenewal(ctx, next); err != nil {
		t.Errorf("ForceRenewal of the new one: %v", err)
	}
}

// TestReleaseRenewal: a refused renewal goes back to scheduled, without a
// new key, and waits for its next attempt.
func TestReleaseRenewal(t *testing.T) { forEachBackend(t, testReleaseRenewal) }

func testReleaseRenewal(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	id := enrolled(t, s, 0)
	if err := s.ClaimRenewal(ctx, id); err != nil {
		t.Fatal(err)
	}
	next := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if err := s.ReleaseRenewal(ctx, id, "policy refused", next); err != nil {
		t.Fatal(err)
	}
	r, _ := s.GetRenewal(ctx, id)
	if r.State != RenewalScheduled || r.NewRecordID != 0 || !r.NextAttempt.Equal(next) || r.LastError != "policy refused" {
		t.Fatalf("after ReleaseRenewal: %+v", r)
	}
	if scheduled, _ := s.ListRenewals(ctx, RenewalScheduled); len(scheduled) != 1 {
		t.Errorf("ListRenewals(scheduled) = %d rows", len(scheduled))
	}
}

// TestAccounts: an account per CA and token. A racing second begin on
// the same token gets the first row; another token (another node's) gets
// an account of its own with the same key label; URLs are kept apart.
func TestAccounts(t *testing.T) { forEachBackend(t, testAccounts) }

func testAccounts(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	onT := AccountOf{CA: "pebble", TokenLabel: "t", TokenSerial: "1111"}
	onU := AccountOf{CA: "pebble", TokenLabel: "u", TokenSerial: "2222"}
	if _, err := s.GetAccount(ctx, onT); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetAccount before: %v", err)
	}
	begin := func(of AccountOf, keyID byte) (*Account, error) {
		return s.BeginAccount(ctx, &Account{CA: of.CA, TokenLabel: of.TokenLabel, TokenSerial: of.TokenSerial,
			KeyLabel: "csrd-acme-pebble", KeyID: []byte{keyID}})
	}
	a, err := begin(onT, 1)
	if err != nil || a.Created.IsZero() {
		t.Fatal(a, err)
	}
	if b, err := begin(onT, 9); err != nil || b.KeyID[0] != 1 {
		t.Fatalf("BeginAccount again on the same token = %+v, %v", b, err)
	}
	if u, err := begin(onU, 5); err != nil || u.KeyID[0] != 5 || u.TokenLabel != "u" {
		t.Fatalf("BeginAccount on another token = %+v, %v; want its own row", u, err)
	}
	if err := s.SetAccountURL(ctx, onT, "https://ca/acct/1"); err != nil {
		t.Fatal(err)
	}
	for of, want := range map[AccountOf]string{onT: "https://ca/acct/1", onU: ""} {
		if a, err := s.GetAccount(ctx, of); err != nil || a.URL != want {
			t.Errorf("%s: %+v, %v; want URL %q", of, a, err, want)
		}
	}
	if err := s.SetAccountURL(ctx, AccountOf{CA: "other", TokenLabel: "t"}, "u"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetAccountURL(unknown) = %v", err)
	}
}

// TestAccountsMigration: 0070 keeps an account made under 0040's one
// account per CA (its token's serial unknown, NULL) as that token's
// account, and lets another token of the CA have one too.
func TestAccountsMigration(t *testing.T) { forEachBackend(t, testAccountsMigration) }

func testAccountsMigration(t *testing.T, bk backend) {
	ctx := context.Background()
	old, reopen := openBefore(t, bk, 70)
	if _, err := old.ExecContext(ctx, `INSERT INTO acme_accounts (ca, token_label, token_serial, key_label, key_id, account_url, created_time, updated_time)
VALUES ('pebble', 't', NULL, 'csrd-acme-pebble', '0102', 'https://ca/acct/1', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')`); err != nil {
		t.Fatal(err)
	}
	if _, err := old.ExecContext(ctx, `INSERT INTO acme_accounts (ca, token_label, token_serial, key_label, key_id, created_time, updated_time)
VALUES ('pebble', 'u', '2222', 'csrd-acme-pebble', '09', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')`); err == nil {
		t.Fatal("the old schema took a second account for the CA; the test proves nothing")
	}
	s := reopen()
	a, err := s.GetAccount(ctx, AccountOf{CA: "pebble", TokenLabel: "t"})
	if err != nil || a.URL != "https://ca/acct/1" || a.KeyID[0] != 1 || a.TokenSerial != "" {
		t.Fatalf("the migrated account: %+v, %v", a, err)
	}
	u, err := s.BeginAccount(ctx, &Account{CA: "pebble", TokenLabel: "u", TokenSerial: "2222", KeyLabel: "csrd-acme-pebble", KeyID: []byte{9}})
	if err != nil || u.KeyID[0] != 9 {
		t.Fatalf("another token's account after the migration: %+v, %v", u, err)
	}
}

// enrolled makes a married record with a closed order and a scheduled renewal.
func enrolled(t *testing.T, s *Store, replaces int64) int64 {
	t.Helper()
	ctx := context.Background()
	id := newKeyIn(t, s, StatePending)
	o, _, err := s.OpenOrder(ctx, id, "pebble", replaces)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Transition(ctx, id, []State{StatePending}, StateMarried, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseOrder(ctx, o.ID, Closing{RenewAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestRenewalKeys covers what the renewal loop reads and moves besides the
// claim: the renew time, a resumed attempt, the renewal's new records
// (keys.renewal_of) and the married certificates' expiries.
func TestRenewalKeys(t *testing.T) { forEachBackend(t, testRenewalKeys) }

func testRenewalKeys(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	old := enrolled(t, s, 0)
	at := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	if err := s.SetRenewAt(ctx, old, at); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.GetRenewal(ctx, old); !r.RenewAt.Equal(at) {
		t.Errorf("RenewAt = %v, want %v", r.RenewAt, at)
	}
	var se *RenewalStateError
	if err := s.RetryRenewal(ctx, old); !errors.As(err, &se) || se.State != RenewalScheduled {
		t.Errorf("RetryRenewal of a scheduled renewal: %v, want *RenewalStateError", err)
	}
	if err := s.ClaimRenewal(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := s.RetryRenewal(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRenewAt(ctx, old, at); !errors.As(err, &se) || se.State != RenewalRenewing {
		t.Errorf("SetRenewAt while renewing: %v, want *RenewalStateError", err)
	}
	var made []int64
	for range 2 {
		id, err := s.BeginKey(ctx, &KeyRecord{KeyType: "ECDSA", Curve: "P-256", RenewalOf: old}, testPrefix)
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, id)
	}
	recs, err := s.RenewalKeys(ctx, old)
	if err != nil || len(recs) != 2 || recs[0].ID != made[0] || recs[1].ID != made[1] || recs[0].RenewalOf != old {
		t.Fatalf("RenewalKeys = %v, %v; want records %v renewing %d", recs, err, made, old)
	}
	if r, _ := s.GetRenewal(ctx, old); r.Attempts != 2 {
		t.Errorf("Attempts = %d, want 2 (claim and retry)", r.Attempts)
	}

	married := newKeyIn(t, s, StatePending)
	c := testCert(int(married))
	if err := s.BeginMarriage(ctx, married, c, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishMarriage(ctx, married, nil); err != nil {
		t.Fatal(err)
	}
	exp, err := s.MarriedNotAfter(ctx)
	if err != nil || len(exp) != 1 || !exp[0].Equal(c.NotAfter) {
		t.Errorf("MarriedNotAfter = %v, %v; want [%v]", exp, err, c.NotAfter)
	}
}
