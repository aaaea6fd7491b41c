package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// TestAuditChainAcrossStores: two Stores on one database (two csrd nodes on
// one PostgreSQL, or csrd and csrctl on one SQLite file) append at once,
// each through its own group-committing writer. The result is one linear
// chain: ids 1..n without a gap, each row chained to the one before, and
// every record's completion carrying its own row.
func TestAuditChainAcrossStores(t *testing.T) { forEachBackend(t, testAuditChainAcrossStores) }

func testAuditChainAcrossStores(t *testing.T, bk backend) {
	ctx := context.Background()
	a, b := bk.openTwo(t)
	const perWriter = 40
	var wg sync.WaitGroup
	errs := make(chan error, 8*perWriter)
	for w, s := range []*Store{a, b, a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				var err error
				if i%2 == 0 {
					err = writeGenerateRecord(ctx, s, w*1000+i)
				} else {
					err = s.AppendAudit(ctx, &AuditEntry{Actor: fmt.Sprint("w", w), Operation: "pending_read",
						Result: AuditOK, Status: 200, RequestID: fmt.Sprint(w, "-", i)})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, s := range []*Store{a, b} {
		rep, err := s.VerifyAudit(ctx)
		if err != nil {
			t.Fatalf("VerifyAudit: %v", err)
		}
		if rep.Rows != 6*perWriter || rep.LastID != rep.Rows {
			t.Errorf("chain %+v, want %d rows with ids 1..%[2]d", rep, 6*perWriter)
		}
	}
	counts, err := b.CountByState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[StatePending] != 3*perWriter {
		t.Errorf("%d pending records, want %d", counts[StatePending], 3*perWriter)
	}
}
