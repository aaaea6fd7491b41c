package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func appendN(t *testing.T, s *Store, n int) []*AuditEntry {
	t.Helper()
	var out []*AuditEntry
	for i := range n {
		e := &AuditEntry{Actor: `CORP\alice`, AuthMethod: "basic", Source: "127.0.0.1", Operation: "generate",
			Result: AuditOK, Status: 200, RecordID: int64(i + 1), KeyLabel: fmt.Sprintf("csrd-%d", i+1),
			RequestID: fmt.Sprintf("req-%d", i)}
		if err := s.AppendAudit(context.Background(), e); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
		out = append(out, e)
	}
	return out
}

func TestAuditChainAppendsAndVerifies(t *testing.T) {
	forEachBackend(t, testAuditChainAppendsAndVerifies)
}

func testAuditChainAppendsAndVerifies(t *testing.T, bk backend) {
	ctx := context.Background()
	s := bk.open(t)
	if rep, err := s.VerifyAudit(ctx); err != nil || rep.Rows != 0 {
		t.Fatalf("empty log: %+v, %v", rep, err)
	}
	es := appendN(t, s, 5)
	if es[0].ID != 1 || es[0].PrevHash != genesisHash {
		t.Errorf("first row: id %d prev %s", es[0].ID, es[0].PrevHash)
	}
	for i := 1; i < len(es); i++ {
		if es[i].PrevHash != es[i-1].Hash || es[i].ID != es[i-1].ID+1 {
			t.Errorf("row %d does not chain to row %d", es[i].ID, es[i-1].ID)
		}
	}
	rep, err := s.VerifyAudit(ctx)
	if err != nil {
		t.Fatalf("VerifyAudit: %v", err)
	}
	if rep.Rows != 5 || rep.LastID != 5 || rep.Head != es[4].Hash {
		t.Errorf("report %+v, want 5 rows ending in %s", rep, es[4].Hash)
	}
	if n, err := s.CountAudit(ctx); err != nil || n != 5 {
		t.Errorf("CountAudit = %d, %v", n, err)
	}
}

// The triggers refuse UPDATE and DELETE (and on PostgreSQL TRUNCATE and a
// rewound sequence).
func TestAuditTriggersRefuseChanges(t *testing.T) { forEachBackend(t, testAuditTriggersRefuseChanges) }

func testAuditTriggersRefuseChanges(t *testing.T, bk backend) {
	ctx := context.Background()
	s := bk.open(t)
	appendN(t, s, 2)
	refused := []string{
		"UPDATE audit SET actor = 'mallory' WHERE id = 1",
		"DELETE FROM audit WHERE id = 2",
	}
	if bk.name == "postgres" {
		refused = append(refused, "TRUNCATE audit", "UPDATE audit_seq SET seq = 1", "DELETE FROM audit_seq")
	}
	for _, q := range refused {
		if _, err := s.w.ExecContext(ctx, q); err == nil {
			t.Errorf("%s succeeded; the append-only triggers are missing", q)
		}
	}
	if _, err := s.VerifyAudit(ctx); err != nil {
		t.Errorf("VerifyAudit after refused changes: %v", err)
	}
}

// rewindAuditSeq stands for the backend's statement that sets the audit
// sequence back to 4 (backend.setAuditSeq).
const rewindAuditSeq = "rewind the audit sequence"

// Someone with write access to the file can drop the triggers; the chain
// still shows what they did.
func TestAuditTamperDetected(t *testing.T) { forEachBackend(t, testAuditTamperDetected) }

func testAuditTamperDetected(t *testing.T, bk backend) {
	tests := []struct {
		name   string
		sql    []string
		wantAt int64
	}{
		{"edit a row", []string{"UPDATE audit SET actor = 'mallory' WHERE id = 3"}, 3},
		{"edit a row and its hash", []string{"UPDATE audit SET result = 'refused', hash = '" + fmt.Sprintf("%064x", 1) + "' WHERE id = 2"}, 2},
		{"delete a middle row", []string{"DELETE FROM audit WHERE id = 3"}, 3},
		{"delete the first row", []string{"DELETE FROM audit WHERE id = 1"}, 1},
		{"delete the last row", []string{"DELETE FROM audit WHERE id = 5"}, 5},
		{"delete the last row and rewind the sequence", []string{
			"DELETE FROM audit WHERE id = 5",
			rewindAuditSeq,
		}, 0}, // undetectable locally: the head hash recorded elsewhere is the defence
		{"insert a forged row at the end", []string{
			"INSERT INTO audit (id, time, actor, auth_method, source, operation, result, status, request_id, prev_hash, hash) " +
				"VALUES (6, 'x', 'mallory', 'none', '::1', 'admin', 'ok', 200, 'r', '" + genesisHash + "', '" + fmt.Sprintf("%064x", 2) + "')",
		}, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := bk.open(t)
			es := appendN(t, s, 5)
			for _, q := range bk.dropAuditGuards {
				if _, err := s.w.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			for _, q := range tt.sql {
				if q == rewindAuditSeq {
					q = bk.setAuditSeq(4)
				}
				if _, err := s.w.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			rep, err := s.VerifyAudit(ctx)
			if tt.wantAt == 0 {
				if err != nil || rep.Head != es[3].Hash {
					t.Fatalf("VerifyAudit = %+v, %v; want a clean chain ending at row 4", rep, err)
				}
				// ... but a head hash recorded elsewhere shows it.
				if _, err := s.AuditIDByHash(ctx, es[4].Hash); !errors.Is(err, ErrNotFound) {
					t.Fatalf("AuditIDByHash(recorded head) = %v, want ErrNotFound", err)
				}
				if id, err := s.AuditIDByHash(ctx, strings.ToUpper(es[3].Hash)); err != nil || id != 4 {
					t.Fatalf("AuditIDByHash(row 4) = %d, %v", id, err)
				}
				return
			}
			var ce *AuditChainError
			if !errors.Is(err, ErrAuditTampered) || !errors.As(err, &ce) {
				t.Fatalf("VerifyAudit = %+v, %v; want ErrAuditTampered", rep, err)
			}
			if ce.ID != tt.wantAt {
				t.Errorf("break reported at row %d (%s), want %d", ce.ID, ce.Reason, tt.wantAt)
			}
		})
	}
}

// After the tail was deleted, a new row must not take a deleted id: the
// gap stays visible.
func TestAuditAppendAfterTruncationKeepsGap(t *testing.T) {
	forEachBackend(t, testAuditAppendAfterTruncationKeepsGap)
}

func testAuditAppendAfterTruncationKeepsGap(t *testing.T, bk backend) {
	ctx := context.Background()
	s := bk.open(t)
	appendN(t, s, 3)
	for _, q := range bk.dropAuditGuards {
		if _, err := s.w.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.w.ExecContext(ctx, "DELETE FROM audit WHERE id = 3"); err != nil {
		t.Fatal(err)
	}
	e := appendN(t, s, 1)[0]
	if e.ID != 4 {
		t.Errorf("new row id %d, want 4", e.ID)
	}
	if _, err := s.VerifyAudit(ctx); !errors.Is(err, ErrAuditTampered) {
		t.Errorf("VerifyAudit = %v, want ErrAuditTampered", err)
	}
}

// CompleteKey's audit row commits with the record's move to pending, or not
// at all: a refused completion appends nothing, and the row names the
// record and its key label as stored.
func TestCompleteKeyAppendsAuditAtomically(t *testing.T) {
	forEachBackend(t, testCompleteKeyAppendsAuditAtomically)
}

func testCompleteKeyAppendsAuditAtomically(t *testing.T, bk backend) {
	ctx := context.Background()
	pem := "-----BEGIN CERTIFICATE REQUEST-----\n"
	tests := []struct {
		name    string
		state   State
		wantErr bool
	}{
		{"generating record completes with its row", StateGenerating, false},
		{"pending record is refused, no row", StatePending, true},
		{"failed record is refused, no row", StateFailed, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := bk.open(t)
			appendN(t, s, 1) // a row before, so the new one must chain to it
			id := newKeyIn(t, s, tt.state)
			e := &AuditEntry{Actor: "alice", AuthMethod: "basic", Source: "127.0.0.1", Operation: "generate",
				Result: AuditOK, Status: 200, RequestID: "req-complete"}
			err := s.CompleteKey(ctx, id, pem, spki(500+i), e)
			if (err != nil) != tt.wantErr {
				t.Fatalf("CompleteKey: %v, want error %v", err, tt.wantErr)
			}
			rows, lerr := s.ListAudit(ctx, 1, 10)
			if lerr != nil {
				t.Fatal(lerr)
			}
			if tt.wantErr {
				if len(rows) != 0 {
					t.Errorf("refused completion appended %+v", rows)
				}
				return
			}
			if len(rows) != 1 {
				t.Fatalf("%d rows after completion, want 1", len(rows))
			}
			r := rows[0]
			if r.RecordID != id || r.KeyLabel != testLabel(id) || r.RequestID != "req-complete" || r.Hash != e.Hash {
				t.Errorf("row %+v does not name record %d (%s) or differs from the entry returned (%s)", r, id, testLabel(id), e.Hash)
			}
			if rec, gerr := s.Get(ctx, id); gerr != nil || rec.State != StatePending {
				t.Errorf("record after completion: %+v, %v", rec, gerr)
			}
			if _, verr := s.VerifyAudit(ctx); verr != nil {
				t.Errorf("VerifyAudit: %v", verr)
			}
		})
	}
}
