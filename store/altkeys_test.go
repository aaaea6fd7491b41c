package store

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

const testPEM = "-----BEGIN CERTIFICATE REQUEST-----\n"

func TestHybridRecordLifecycle(t *testing.T) { forEachBackend(t, testHybridRecordLifecycle) }

func testHybridRecordLifecycle(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	const pem = testPEM
	seal := []byte{0x30, 0x03, 0x02, 0x01, 0x01} // opaque to store

	tests := []struct {
		name    string
		rec     KeyRecord
		alt     AltCompletion
		wantLbl func(id int64) string
	}{
		{
			name:    "token",
			rec:     KeyRecord{KeyType: "ED25519", AltKeyType: "ML-DSA-65", AltKeyStorage: AltStorageToken, AltKeyID: []byte{0xa1, 0x1e}},
			alt:     AltCompletion{SPKISHA256: spki(1)},
			wantLbl: func(id int64) string { return testLabel(id) + "-alt" },
		},
		{
			name:    "sealed",
			rec:     KeyRecord{KeyType: "RSA", KeySize: 2048, AltKeyType: "ML-DSA-87", AltKeyStorage: AltStorageSealed},
			alt:     AltCompletion{SPKISHA256: spki(2), SealedSeed: seal},
			wantLbl: func(int64) string { return "" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := tt.rec
			id, err := s.BeginKey(ctx, &rec, testPrefix)
			if err != nil {
				t.Fatal(err)
			}
			if rec.AltKeyLabel != tt.wantLbl(id) {
				t.Errorf("AltKeyLabel after BeginKey = %q, want %q", rec.AltKeyLabel, tt.wantLbl(id))
			}
			// Crash-safety: a generating record already names the alternative key.
			got, err := s.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if got.AltKeyStorage != tt.rec.AltKeyStorage || got.AltKeyType != tt.rec.AltKeyType ||
				got.AltKeyLabel != tt.wantLbl(id) || !bytes.Equal(got.AltKeyID, tt.rec.AltKeyID) || got.AltSealedSeed != nil {
				t.Errorf("generating record: %+v", got)
			}
			// Reconciliation lists generating records and needs the same.
			recs, err := s.ListByState(ctx, StateGenerating)
			if err != nil {
				t.Fatal(err)
			}
			if last := recs[len(recs)-1]; last.ID != id || last.AltKeyLabel != got.AltKeyLabel || !bytes.Equal(last.AltKeyID, got.AltKeyID) {
				t.Errorf("ListByState: %+v", last)
			}
			if err := s.CompleteHybridKey(ctx, id, pem, spki(9), tt.alt, nil); err != nil {
				t.Fatal(err)
			}
			if got, _ := s.Get(ctx, id); got.State != StatePending || !bytes.Equal(got.AltSPKISHA256, tt.alt.SPKISHA256) || !bytes.Equal(got.AltSealedSeed, tt.alt.SealedSeed) {
				t.Errorf("pending record: %+v", got)
			}
		})
	}
}

func TestCompleteHybridKey(t *testing.T) { forEachBackend(t, testCompleteHybridKey) }

func testCompleteHybridKey(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	const pem = testPEM
	seal := []byte("sealed")
	n := 0
	begin := func(t *testing.T, storage AltStorage) int64 {
		t.Helper()
		rec := &KeyRecord{KeyType: "ECC", AltKeyType: "ML-DSA-44", AltKeyStorage: storage}
		if storage == AltStorageToken {
			n++
			rec.AltKeyID = spki(100 + n)[:16]
		}
		id, err := s.BeginKey(ctx, rec, testPrefix)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}

	t.Run("sealed stores the seal", func(t *testing.T) {
		id := begin(t, AltStorageSealed)
		if err := s.CompleteHybridKey(ctx, id, pem, spki(1), AltCompletion{SPKISHA256: spki(2), SealedSeed: seal}, nil); err != nil {
			t.Fatal(err)
		}
		got, _ := s.Get(ctx, id)
		if got.State != StatePending || !bytes.Equal(got.AltSealedSeed, seal) || !bytes.Equal(got.AltSPKISHA256, spki(2)) {
			t.Fatalf("record %+v", got)
		}
		if err := s.ClearSealedSeed(ctx, id); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Get(ctx, id); got.AltSealedSeed != nil || got.AltKeyStorage != AltStorageSealed {
			t.Errorf("after ClearSealedSeed: seed %x storage %q", got.AltSealedSeed, got.AltKeyStorage)
		}
	})
	t.Run("sealed without seal is refused", func(t *testing.T) {
		id := begin(t, AltStorageSealed)
		if err := s.CompleteHybridKey(ctx, id, pem, spki(3), AltCompletion{SPKISHA256: spki(4)}, nil); err == nil {
			t.Fatal("completed a sealed record without its seal")
		}
		if got, _ := s.Get(ctx, id); got.State != StateGenerating {
			t.Errorf("state %s after the refused completion, want generating (rolled back)", got.State)
		}
	})
	t.Run("token with a seal is refused", func(t *testing.T) {
		id := begin(t, AltStorageToken)
		if err := s.CompleteHybridKey(ctx, id, pem, spki(5), AltCompletion{SPKISHA256: spki(6), SealedSeed: seal}, nil); err == nil {
			t.Fatal("stored a seal for a token-resident key")
		}
		if err := s.CompleteHybridKey(ctx, id, pem, spki(5), AltCompletion{SPKISHA256: spki(6)}, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("record without alternative key is refused", func(t *testing.T) {
		id, err := s.BeginKey(ctx, &KeyRecord{KeyType: "ECC"}, testPrefix)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CompleteHybridKey(ctx, id, pem, spki(7), AltCompletion{SPKISHA256: spki(8)}, nil); err == nil {
			t.Fatal("completed a plain record as hybrid")
		}
	})
	t.Run("not generating", func(t *testing.T) {
		id := newKeyIn(t, s, StateFailed)
		if err := s.CompleteHybridKey(ctx, id, pem, spki(7), AltCompletion{SPKISHA256: spki(8)}, nil); !errors.Is(err, ErrConflict) {
			t.Fatalf("complete a failed record: %v, want ErrConflict", err)
		}
	})
}

func TestBeginKeyAltChecks(t *testing.T) { forEachBackend(t, testBeginKeyAltChecks) }

func testBeginKeyAltChecks(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	tests := []struct {
		name string
		rec  KeyRecord
	}{
		{"type without storage", KeyRecord{AltKeyType: "ML-DSA-44"}},
		{"unknown storage", KeyRecord{AltKeyType: "ML-DSA-44", AltKeyStorage: "disk"}},
		{"token without id", KeyRecord{AltKeyType: "ML-DSA-44", AltKeyStorage: AltStorageToken}},
		{"token without type", KeyRecord{AltKeyStorage: AltStorageToken, AltKeyID: []byte{1}}},
		{"sealed with id", KeyRecord{AltKeyType: "ML-DSA-44", AltKeyStorage: AltStorageSealed, AltKeyID: []byte{1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := tt.rec
			if _, err := s.BeginKey(ctx, &rec, testPrefix); err == nil {
				t.Error("BeginKey accepted it")
			}
		})
	}
	// The alternative CKA_ID is unique like the primary one.
	rec := KeyRecord{AltKeyType: "ML-DSA-44", AltKeyStorage: AltStorageToken, AltKeyID: []byte{0xee}}
	if _, err := s.BeginKey(ctx, &rec, testPrefix); err != nil {
		t.Fatal(err)
	}
	rec2 := rec
	if _, err := s.BeginKey(ctx, &rec2, testPrefix); !errors.Is(err, ErrConflict) {
		t.Errorf("second record with the same alternative key id: %v, want ErrConflict", err)
	}
	if n, _ := s.CountByState(ctx); n[StateGenerating] != 1 {
		t.Errorf("%d generating records, want 1 (the conflicting insert rolled back)", n[StateGenerating])
	}
}
