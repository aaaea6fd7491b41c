package store

import (
	"context"
	"testing"
)

// The intents that decide a key's fate — delete (the key will be
// destroyed) and marry (a certificate will be bound to it) — commit with
// their audit row or not at all: a refused intent appends nothing, and an
// append that fails leaves no intent.
func TestIntentsCommitWithTheirAuditRow(t *testing.T) {
	forEachBackend(t, testIntentsCommitWithTheirAuditRow)
}

func testIntentsCommitWithTheirAuditRow(t *testing.T, bk backend) {
	ctx := context.Background()
	begin := map[string]func(s *Store, id int64, e *AuditEntry) error{
		"delete": func(s *Store, id int64, e *AuditEntry) error { return s.BeginDelete(ctx, id, e) },
		"marry":  func(s *Store, id int64, e *AuditEntry) error { return s.BeginMarriage(ctx, id, testCert(1), e) },
	}
	for name, begin := range begin {
		t.Run(name, func(t *testing.T) {
			s := bk.open(t)
			row := func() *AuditEntry {
				return &AuditEntry{Actor: "alice", Source: "::1", Operation: name, Result: AuditOK, Status: 204, RequestID: "req-" + name}
			}
			id := newKeyIn(t, s, StatePending)
			e := row()
			if err := begin(s, id, e); err != nil {
				t.Fatal(err)
			}
			rows, err := s.ListAudit(ctx, 0, 10)
			if err != nil || len(rows) != 1 || rows[0].RecordID != id || rows[0].KeyLabel != testLabel(id) || rows[0].Hash != e.Hash {
				t.Fatalf("audit rows %+v, %v; want one naming record %d", rows, err, id)
			}

			// Refused (wrong state): no row.
			failed := newKeyIn(t, s, StateFailed)
			if err := begin(s, failed, row()); err == nil {
				t.Fatal("intent on a failed record accepted")
			}
			// The append fails: no intent.
			if _, err := s.w.ExecContext(ctx, bk.auditFault); err != nil {
				t.Fatal(err)
			}
			other := newKeyIn(t, s, StatePending)
			if err := begin(s, other, row()); err == nil {
				t.Fatal("intent committed although its audit row failed")
			}
			if rec, err := s.Get(ctx, other); err != nil || rec.Intent != IntentNone || rec.State != StatePending {
				t.Errorf("record after a failed audit append: %v %q, %v", rec.State, rec.Intent, err)
			}
			if n, err := s.CountAudit(ctx); err != nil || n != 1 {
				t.Errorf("%d audit rows, want 1 (%v)", n, err)
			}
		})
	}
}

// The changes that record an outcome — a generate failed, a delete or a
// marriage finished — commit with the audit row they are given, or not at
// all: reconciliation records its own acts with them.
func TestOutcomesCommitWithTheirAuditRow(t *testing.T) {
	forEachBackend(t, testOutcomesCommitWithTheirAuditRow)
}

func testOutcomesCommitWithTheirAuditRow(t *testing.T, bk backend) {
	ctx := context.Background()
	tests := []struct {
		name   string
		setUp  func(t *testing.T, s *Store) int64
		finish func(s *Store, id int64, e *AuditEntry) error
		want   State
	}{{
		name:   "fail",
		setUp:  func(t *testing.T, s *Store) int64 { return newKeyIn(t, s, StateGenerating) },
		finish: func(s *Store, id int64, e *AuditEntry) error { return s.FailKey(ctx, id, "interrupted", e) },
		want:   StateFailed,
	}, {
		name: "finish delete",
		setUp: func(t *testing.T, s *Store) int64 {
			id := newKeyIn(t, s, StatePending)
			if err := s.BeginDelete(ctx, id, nil); err != nil {
				t.Fatal(err)
			}
			return id
		},
		finish: func(s *Store, id int64, e *AuditEntry) error { return s.FinishDelete(ctx, id, "reconciled", e) },
		want:   StateDeleted,
	}, {
		name: "finish marriage",
		setUp: func(t *testing.T, s *Store) int64 {
			id := newKeyIn(t, s, StatePending)
			if err := s.BeginMarriage(ctx, id, testCert(int(id)), nil); err != nil {
				t.Fatal(err)
			}
			return id
		},
		finish: func(s *Store, id int64, e *AuditEntry) error { return s.FinishMarriage(ctx, id, e) },
		want:   StateMarried,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := bk.open(t)
			row := func() *AuditEntry {
				return &AuditEntry{Actor: "csrd", Source: "csrd", Operation: "reconcile_" + tc.name, Result: AuditOK, RequestID: "reconcile-1"}
			}
			id := tc.setUp(t, s)
			e := row()
			if err := tc.finish(s, id, e); err != nil {
				t.Fatal(err)
			}
			rows, err := s.ListAudit(ctx, 0, 10)
			if err != nil || len(rows) != 1 || rows[0].RecordID != id || rows[0].KeyLabel != testLabel(id) || rows[0].Hash != e.Hash {
				t.Fatalf("audit rows %+v, %v; want one naming record %d", rows, err, id)
			}
			// Refused (done already): no row.
			if err := tc.finish(s, id, row()); err == nil {
				t.Fatal("outcome recorded twice")
			}
			// The append fails: the record keeps its state.
			if _, err := s.w.ExecContext(ctx, bk.auditFault); err != nil {
				t.Fatal(err)
			}
			other := tc.setUp(t, s)
			before, err := s.Get(ctx, other)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.finish(s, other, row()); err == nil {
				t.Fatal("outcome committed although its audit row failed")
			}
			if rec, err := s.Get(ctx, other); err != nil || rec.State != before.State || rec.Intent != before.Intent || rec.State == tc.want {
				t.Errorf("record after a failed audit append: %v %q, %v; want %v %q", rec.State, rec.Intent, err, before.State, before.Intent)
			}
			if n, err := s.CountAudit(ctx); err != nil || n != 1 {
				t.Errorf("%d audit rows, want 1 (%v)", n, err)
			}
		})
	}
}
