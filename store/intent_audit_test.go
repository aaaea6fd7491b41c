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
	ctx := context.Background()
	begin := map[string]func(s *Store, id int64, e *AuditEntry) error{
		"delete": func(s *Store, id int64, e *AuditEntry) error { return s.BeginDelete(ctx, id, e) },
		"marry":  func(s *Store, id int64, e *AuditEntry) error { return s.BeginMarriage(ctx, id, testCert(1), e) },
	}
	for name, begin := range begin {
		t.Run(name, func(t *testing.T) {
			s, _ := openTest(t)
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
			if _, err := s.w.ExecContext(ctx, `CREATE TRIGGER audit_fault BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'injected'); END`); err != nil {
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
