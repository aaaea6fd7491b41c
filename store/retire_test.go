package store

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestRetireIntent(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	id := newKeyIn(t, s, StateMarried)
	audit := &AuditEntry{Actor: "local:ops", AuthMethod: "local", Source: "csrctl", Operation: "retire",
		Result: AuditOK, RecordID: id, KeyLabel: testLabel(id), RequestID: "r1"}
	if err := s.BeginRetire(ctx, id, audit); err != nil {
		t.Fatal(err)
	}
	rec, _ := s.Get(ctx, id)
	if rec.State != StateMarried || rec.Intent != IntentRetire {
		t.Fatalf("after BeginRetire: %s/%q, want married/retire", rec.State, rec.Intent)
	}
	if rows, _ := s.ListAudit(ctx, 0, 10); len(rows) != 1 || rows[0].Operation != "retire" || rows[0].RecordID != id {
		t.Errorf("audit rows after BeginRetire: %+v", rows)
	}
	var be *BusyError
	if err := s.MarkLost(ctx, id, "x"); !errors.As(err, &be) || be.Intent != IntentRetire {
		t.Errorf("MarkLost during retire: %v, want *BusyError(retire)", err)
	}
	if err := s.BeginRetire(ctx, id, nil); err != nil {
		t.Errorf("BeginRetire again (a retry continues): %v", err)
	}
	if recs, _ := s.ListByIntent(ctx, IntentRetire); len(recs) != 1 || recs[0].ID != id {
		t.Errorf("ListByIntent(retire) = %v", recs)
	}
	if err := s.FinishRetire(ctx, id, "renewed by record 9"); err != nil {
		t.Fatal(err)
	}
	rec, _ = s.Get(ctx, id)
	if rec.State != StateRetired || rec.Intent != IntentNone || rec.FailReason != "renewed by record 9" || len(rec.Cert.DER) == 0 && rec.Cert.Thumbprint != "" {
		t.Errorf("after FinishRetire: %s/%q/%q", rec.State, rec.Intent, rec.FailReason)
	}
	var te *TransitionError
	for _, st := range []State{StatePending, StateFailed, StateDeleted, StateRetired} {
		other := id
		if st != StateRetired {
			other = newKeyIn(t, s, st)
		}
		if err := s.BeginRetire(ctx, other, nil); !errors.As(err, &te) || te.State != st {
			t.Errorf("BeginRetire(%s) = %v, want *TransitionError", st, err)
		}
	}
	if err := s.BeginRetire(ctx, 9999, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("BeginRetire(unknown) = %v, want ErrNotFound", err)
	}
}

// TestRetiredStateMigration opens a database made before 0041 that holds
// records, migrates it, and checks that the widened CHECKs take 'retired'
// and 'retire' while still refusing unknown values, with nothing else lost.
func TestRetiredStateMigration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "csrd.db")
	all := mustLoad(t)
	var before []migration
	for _, m := range all {
		if m.version < 40 {
			before = append(before, m)
		}
	}
	old, err := open(ctx, path, before)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.w.ExecContext(ctx, `INSERT INTO keys (request_time, updated_time, state, key_label)
VALUES ('2026-01-01T00:00:00.000000000Z', '2026-01-01T00:00:00.000000000Z', 'married', 'csrd-1')`); err != nil {
		t.Fatal(err)
	}
	if _, err := old.w.ExecContext(ctx, `UPDATE keys SET state = 'retired' WHERE id = 1`); err == nil {
		t.Fatal("the old schema took state 'retired'; the test proves nothing")
	}
	old.Close()

	s, err := open(ctx, path, all)
	if err != nil {
		t.Fatalf("migrating: %v", err)
	}
	defer s.Close()
	for _, q := range []string{
		`UPDATE keys SET intent = 'retire' WHERE id = 1`,
		`UPDATE keys SET state = 'retired', intent = NULL WHERE id = 1`,
	} {
		if _, err := s.w.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, q := range []string{
		`UPDATE keys SET state = 'bogus' WHERE id = 1`,
		`UPDATE keys SET intent = 'bogus' WHERE id = 1`,
	} {
		if _, err := s.w.ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "CHECK") {
			t.Errorf("%s: %v, want a CHECK failure", q, err)
		}
	}
	rec, err := s.Get(ctx, 1)
	if err != nil || rec.State != StateRetired || rec.KeyLabel != "csrd-1" {
		t.Fatalf("record after the migration: %+v, %v", rec, err)
	}
	// A second connection (the read pool) sees the new definition too.
	var ddl string
	if err := s.r.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE name = 'keys'`).Scan(&ddl); err != nil ||
		!strings.Contains(ddl, "'retired'") || !strings.Contains(ddl, "'retire'") {
		t.Errorf("keys definition: %v\n%s", err, ddl)
	}
}
