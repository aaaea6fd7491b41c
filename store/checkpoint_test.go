package store

import (
	"context"
	"strings"
	"testing"
)

// rewriteAudit does what a writer of the database file can: drop the
// append-only triggers, delete the rows drop names, renumber the rest from
// 1, recompute every hash and set the sequence to the new last id. The
// result is a chain that verifies.
func rewriteAudit(t *testing.T, bk backend, s *Store, drop ...int64) {
	t.Helper()
	ctx := context.Background()
	rows, err := s.ListAudit(ctx, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	gone := map[int64]bool{}
	for _, id := range drop {
		gone[id] = true
	}
	for _, q := range append(bk.dropAuditGuards, "DELETE FROM audit") {
		if _, err := s.w.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	prev, id := genesisHash, int64(0)
	for _, r := range rows {
		if gone[r.ID] {
			continue
		}
		id++
		r.ID, r.PrevHash = id, prev
		r.Hash = r.chainHash()
		prev = r.Hash
		if _, err := s.w.ExecContext(ctx, insertAuditSQL, r.ID, r.Time, r.Actor, r.AuthMethod, r.Source, r.Operation, r.Result,
			r.Status, nullInt64(r.RecordID), nullString(r.KeyLabel), r.RequestID, nullString(r.Detail), r.PrevHash, r.Hash); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.w.ExecContext(ctx, bk.setAuditSeq(int(id))); err != nil {
		t.Fatal(err)
	}
}

func testCheckpoint(id int64, hash string) *AuditCheckpoint {
	return &AuditCheckpoint{Time: "2030-01-01T00:00:00Z", Node: "node-a", KeyID: strings.Repeat("ab", 32),
		PublicKey: []byte{1}, AuditID: id, AuditHash: hash, Signature: []byte{2}}
}

// VerifyAudit returns the checkpoints, each marked whether the log still
// has the row it signed with the hash it signed.
func TestVerifyAuditMarksCheckpoints(t *testing.T) {
	forEachBackend(t, testVerifyAuditMarksCheckpoints)
}

func testVerifyAuditMarksCheckpoints(t *testing.T, bk backend) {
	ctx := context.Background()
	s := bk.open(t)
	if id, hash, err := s.AuditHead(ctx); err != nil || id != 0 || hash != genesisHash {
		t.Fatalf("AuditHead of the empty log = %d, %s, %v", id, hash, err)
	}
	empty := testCheckpoint(0, genesisHash)
	if err := s.AppendCheckpoint(ctx, empty); err != nil || empty.ID != 1 {
		t.Fatalf("AppendCheckpoint(empty log) = %v, id %d", err, empty.ID)
	}
	es := appendN(t, s, 5)
	if id, hash, err := s.AuditHead(ctx); err != nil || id != 5 || hash != es[4].Hash {
		t.Fatalf("AuditHead = %d, %s, %v", id, hash, err)
	}
	for _, cp := range []*AuditCheckpoint{testCheckpoint(3, es[2].Hash), testCheckpoint(5, es[4].Hash), testCheckpoint(4, es[2].Hash), testCheckpoint(9, es[4].Hash)} {
		if err := s.AppendCheckpoint(ctx, cp); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := s.VerifyAudit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]bool{0: true, 3: true, 5: true, 4: false, 9: false}
	if len(rep.Checkpoints) != len(want) {
		t.Fatalf("%d checkpoints, want %d", len(rep.Checkpoints), len(want))
	}
	for _, cp := range rep.Checkpoints {
		if cp.InLog != want[cp.AuditID] {
			t.Errorf("checkpoint of row %d: InLog %v, want %v", cp.AuditID, cp.InLog, want[cp.AuditID])
		}
	}

	// Delete row 2 and recompute: the chain verifies, the checkpoints of
	// rows 3 and 5 no longer match.
	rewriteAudit(t, bk, s, 2)
	rep, err = s.VerifyAudit(ctx)
	if err != nil {
		t.Fatalf("the rewritten chain should verify on its own: %v", err)
	}
	for _, cp := range rep.Checkpoints {
		if cp.AuditID > 0 && cp.InLog {
			t.Errorf("checkpoint of row %d still matches a rewritten log", cp.AuditID)
		}
	}
}

func TestCheckpointsAreAppendOnly(t *testing.T) { forEachBackend(t, testCheckpointsAreAppendOnly) }

func testCheckpointsAreAppendOnly(t *testing.T, bk backend) {
	ctx := context.Background()
	s := bk.open(t)
	if err := s.AppendCheckpoint(ctx, testCheckpoint(0, genesisHash)); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"UPDATE audit_checkpoints SET node = 'x'", "DELETE FROM audit_checkpoints"} {
		if _, err := s.w.ExecContext(ctx, q); err == nil {
			t.Errorf("%s succeeded", q)
		}
	}
	for _, bad := range []*AuditCheckpoint{
		nil,
		{Time: "t", Node: "n", KeyID: "short", PublicKey: []byte{1}, AuditHash: genesisHash, Signature: []byte{1}},
		{Time: "t", Node: "n", KeyID: genesisHash, PublicKey: []byte{1}, AuditHash: genesisHash},
		{Time: "t", Node: "n", KeyID: strings.ToUpper(strings.Repeat("ab", 32)), PublicKey: []byte{1}, AuditHash: genesisHash, Signature: []byte{1}},
	} {
		if err := s.AppendCheckpoint(ctx, bad); err == nil {
			t.Errorf("AppendCheckpoint(%+v) succeeded", bad)
		}
	}
	if _, err := s.VerifyAudit(ctx); err != nil {
		t.Error(err)
	}
}
