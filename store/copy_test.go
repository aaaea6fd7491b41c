package store

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/csrd/csrd/fixture"
)

// TestCopySQLite copies a SQLite database with records in every state, a
// hybrid record with a sealed seed, a married certificate, an unfinished
// intent and an audit chain into PostgreSQL: every record reads back the
// same, ids included; the chain verifies with the same head; new ids
// continue after the source's, even past deleted ones; a target with
// records and a source in use are refused.
func TestCopySQLite(t *testing.T) {
	ctx := context.Background()
	pg := fixture.SharedPostgres(t)
	path := filepath.Join(t.TempDir(), "csrd.db")
	src, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, st := range States() {
		ids = append(ids, newKeyIn(t, src, st))
	}
	hybrid, err := src.BeginKey(ctx, &KeyRecord{KeyType: "ECC", AltKeyType: "ML-DSA-65", AltKeyStorage: AltStorageSealed,
		SANs: []string{"DNS:h.example.com"}, Decision: benchDecision, EnrollmentPatternID: 7, Template: "Web"}, testPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.CompleteHybridKey(ctx, hybrid, "-----BEGIN CERTIFICATE REQUEST-----\n", spki(900), AltCompletion{SPKISHA256: spki(901), SealedSeed: []byte{1, 2, 3}}, nil); err != nil {
		t.Fatal(err)
	}
	married := newKeyIn(t, src, StatePending)
	if err := src.BeginMarriage(ctx, married, testCert(3), nil); err != nil {
		t.Fatal(err)
	}
	if err := src.FinishMarriage(ctx, married, nil); err != nil {
		t.Fatal(err)
	}
	marrying := newKeyIn(t, src, StatePending)
	if err := src.BeginMarriage(ctx, marrying, testCert(4), nil); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, hybrid, married, marrying)
	appendN(t, src, 5)
	head, hash, err := src.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.AppendCheckpoint(ctx, testCheckpoint(head, hash)); err != nil {
		t.Fatal(err)
	}
	// The newest record is deleted outright: its id must not come back.
	gone, err := src.BeginKey(ctx, &KeyRecord{}, testPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.w.ExecContext(ctx, `DELETE FROM keys WHERE id = ?`, gone); err != nil {
		t.Fatal(err)
	}
	want := map[int64]*KeyRecord{}
	for _, id := range ids {
		if want[id], err = src.Get(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	wantAudit, err := src.VerifyAudit(ctx)
	if err != nil {
		t.Fatal(err)
	}

	dsn := pg.CreateDB(t, "copy")
	dst := openCleanup(t, dsn, WithPassword(pg.Password))
	if _, err := CopySQLite(ctx, path, dst); !errors.Is(err, ErrInUse) {
		t.Fatalf("copy while the source is open: %v, want ErrInUse", err)
	}
	src.Close()
	rep, err := CopySQLite(ctx, path, dst)
	if err != nil {
		t.Fatalf("CopySQLite: %v", err)
	}
	if rep.Tables["keys"] != int64(len(ids)) || rep.Tables["audit"] != 5 || rep.Tables["audit_checkpoints"] != 1 ||
		!reflect.DeepEqual(rep.Audit, wantAudit) || len(rep.Audit.Checkpoints) != 1 || !rep.Audit.Checkpoints[0].InLog {
		t.Errorf("report %+v, want %d keys, 5 audit rows, 1 checkpoint in the log, chain %+v", rep, len(ids), wantAudit)
	}
	for _, id := range ids {
		got, err := dst.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want[id]) {
			t.Errorf("record %d:\n got %+v\nwant %+v", id, got, want[id])
		}
	}
	next, err := dst.BeginKey(ctx, &KeyRecord{}, testPrefix)
	if err != nil || next != gone+1 {
		t.Errorf("first new id %d (%v), want %d: after the source's last, deleted one", next, err, gone+1)
	}
	appendN(t, dst, 1)
	if r, err := dst.VerifyAudit(ctx); err != nil || r.LastID != 6 {
		t.Errorf("the chain after a new row: %+v, %v", r, err)
	}
	if _, err := CopySQLite(ctx, path, dst); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("a second copy into the same database: %v, want ErrNotEmpty", err)
	}
}
