package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGroupCommit: writes arriving together share transactions, yet each
// stands alone — one refused (a duplicate CKA_ID) is rolled back without
// taking the others with it, and every write reported done is there.
func TestGroupCommit(t *testing.T) { forEachBackend(t, testGroupCommit) }

func testGroupCommit(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	dup := []byte{0xde, 0xad}
	if _, err := s.BeginKey(ctx, &KeyRecord{KeyID: dup}, testPrefix); err != nil {
		t.Fatal(err)
	}
	const n = 40
	ids := make([]int64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keyID := []byte(fmt.Sprintf("key-%02d", i))
			if i == n/2 {
				keyID = dup
			}
			ids[i], errs[i] = s.BeginKey(ctx, &KeyRecord{KeyID: keyID, KeyType: "ECC"}, testPrefix)
			if errs[i] == nil {
				errs[i] = s.CompleteKey(ctx, ids[i], "-----BEGIN CERTIFICATE REQUEST-----\n", spki(i), nil)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		switch {
		case i == n/2 && !errors.Is(err, ErrConflict):
			t.Errorf("duplicate CKA_ID: %v, want ErrConflict", err)
		case i != n/2 && err != nil:
			t.Errorf("write %d failed beside the refused one: %v", i, err)
		case i != n/2:
			rec, err := s.Get(ctx, ids[i])
			if err != nil || rec.State != StatePending {
				t.Errorf("record %d after commit: %+v, %v", ids[i], rec, err)
			}
		}
	}
	counts, err := s.CountByState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[StatePending] != n-1 || counts[StateGenerating] != 1 {
		t.Errorf("counts %v, want %d pending and the first record generating", counts, n-1)
	}
}

// TestWriteAfterClose: a closed store refuses writes instead of hanging.
func TestWriteAfterClose(t *testing.T) { forEachBackend(t, testWriteAfterClose) }

func testWriteAfterClose(t *testing.T, bk backend) {
	s := bk.open(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BeginKey(context.Background(), &KeyRecord{}, testPrefix); !errors.Is(err, ErrUnavailable) {
		t.Errorf("BeginKey after Close: %v, want ErrUnavailable", err)
	}
}

// TestWriteFailsAlone: a write that fails after changing rows leaves
// nothing behind, whether it met an idle writer (its own transaction, no
// savepoint) or shared a batch (its savepoint rolled back).
func TestWriteFailsAlone(t *testing.T) { forEachBackend(t, testWriteFailsAlone) }

func testWriteFailsAlone(t *testing.T, bk backend) {
	errBoom := errors.New("boom")
	insertThenFail := func(_ context.Context, tx *sql.Tx) error {
		if _, err := tx.Exec(`INSERT INTO keys (state, key_label, key_type, request_time, updated_time) VALUES ('generating', 'half-done', 'ECC', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')`); err != nil {
			return err
		}
		return errBoom
	}
	for _, together := range []int{1, 16} {
		t.Run(fmt.Sprintf("%d at once", together), func(t *testing.T) {
			s := bk.open(t)
			ctx := context.Background()
			var wg sync.WaitGroup
			errs := make([]error, together)
			for i := range together {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if i == 0 {
						errs[i] = s.withTx(ctx, "insert then fail", insertThenFail)
						return
					}
					_, errs[i] = s.BeginKey(ctx, &KeyRecord{KeyID: []byte{byte(i)}, KeyType: "ECC"}, testPrefix)
				}()
			}
			wg.Wait()
			if !errors.Is(errs[0], errBoom) {
				t.Errorf("failing write: %v, want boom", errs[0])
			}
			for i, err := range errs[1:] {
				if err != nil {
					t.Errorf("write %d beside the failing one: %v", i+1, err)
				}
			}
			var n int
			if err := s.w.QueryRowContext(ctx, `SELECT COUNT(*) FROM keys WHERE key_label = 'half-done'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("the failed write left %d rows", n)
			}
		})
	}
}

// TestLostTransactionFailsEveryWrite: when a group commit's transaction is
// lost before COMMIT (the connection dropped, a deadlock), every write in
// it is rolled back, so none may report success; the batch is tried again
// a bounded number of times, and with the fault persisting all fail with
// ErrUnavailable and nothing is committed. (PostgreSQL: SQLite has no such
// errors, it waits in its busy handler.)
func TestLostTransactionFailsEveryWrite(t *testing.T) {
	s := backends[1].open(t)
	ctx := context.Background()
	release := holdWriter(t, s)
	var tries atomic.Int32
	lost := func(context.Context, *sql.Tx) error {
		tries.Add(1)
		return fmt.Errorf("read: %w", io.ErrUnexpectedEOF)
	}
	const n = 4
	errs := make([]error, n+1)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.BeginKey(ctx, &KeyRecord{KeyID: []byte{byte(i + 1)}}, testPrefix)
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); errs[n] = s.withTx(ctx, "lose the connection", lost) }()
	for len(s.writer.queue) < n+1 {
		time.Sleep(time.Millisecond)
	}
	release()
	wg.Wait()
	for i, err := range errs[:n] {
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("write %d beside the lost one: %v, want ErrUnavailable", i, err)
		}
	}
	if !errors.Is(errs[n], io.ErrUnexpectedEOF) {
		t.Errorf("the lost write: %v, want its own error", errs[n])
	}
	if got := tries.Load(); got != maxWriteAttempts {
		t.Errorf("the batch was tried %d times, want %d", got, maxWriteAttempts)
	}
	var count int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM keys`).Scan(&count); err != nil || count != 0 {
		t.Errorf("%d records committed (%v), want none", count, err)
	}
}

// TestBatchRunsBareThenReplays: a batch whose writes all succeed runs each
// once, with no savepoint; a failing write stops the bare run, rolls it
// back and runs the batch again with savepoints, so the others commit
// (those up to the failing one run twice, those after it once) and only
// the failing write's rows are gone.
func TestBatchRunsBareThenReplays(t *testing.T) { forEachBackend(t, testBatchRunsBareThenReplays) }

func testBatchRunsBareThenReplays(t *testing.T, bk backend) {
	for _, tc := range []struct {
		name     string
		failing  int // index of the failing write, -1 for none
		wantRuns [4]int32
	}{
		{"all succeed", -1, [4]int32{1, 1, 1, 1}},
		{"one fails", 2, [4]int32{2, 2, 2, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := bk.open(t)
			ctx := context.Background()
			release := holdWriter(t, s)
			const n = 4
			var runs [n]atomic.Int32
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					errs[i] = s.withTx(ctx, "counted", func(ctx context.Context, tx *sql.Tx) error {
						runs[i].Add(1)
						label := fmt.Sprintf("batch-%d", i)
						if _, err := tx.ExecContext(ctx, `INSERT INTO keys (state, key_label, key_type, request_time, updated_time) VALUES ('generating', ?, 'ECC', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')`, label); err != nil {
							return err
						}
						if i == tc.failing {
							return errors.New("boom")
						}
						return nil
					})
				})
				for len(s.writer.queue) < i+1 { // queued in index order
					time.Sleep(time.Millisecond)
				}
			}
			release()
			wg.Wait()
			var committed int
			if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM keys WHERE key_label LIKE 'batch-%'`).Scan(&committed); err != nil {
				t.Fatal(err)
			}
			want := n
			if tc.failing >= 0 {
				want = n - 1
			}
			if committed != want {
				t.Errorf("%d rows committed, want %d", committed, want)
			}
			for i := range n {
				if (errs[i] != nil) != (i == tc.failing) {
					t.Errorf("write %d: %v", i, errs[i])
				}
				if got := runs[i].Load(); got != tc.wantRuns[i] {
					t.Errorf("write %d ran %d times, want %d", i, got, tc.wantRuns[i])
				}
			}
		})
	}
}

// holdWriter occupies the writer until the returned function is called,
// so that the writes queued meanwhile form one batch.
func holdWriter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	started, done := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- s.withTx(context.Background(), "hold the writer", func(context.Context, *sql.Tx) error {
			close(started)
			<-done
			return nil
		})
	}()
	<-started
	return func() {
		close(done)
		if err := <-held; err != nil {
			t.Errorf("the write that held the writer: %v", err)
		}
	}
}
