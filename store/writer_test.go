package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// TestGroupCommit: writes arriving together share transactions, yet each
// stands alone — one refused (a duplicate CKA_ID) is rolled back without
// taking the others with it, and every write reported done is there.
func TestGroupCommit(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	dup := []byte{0xde, 0xad}
	if _, err := s.BeginKey(ctx, &KeyRecord{KeyID: dup}, testLabel); err != nil {
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
			ids[i], errs[i] = s.BeginKey(ctx, &KeyRecord{KeyID: keyID, KeyType: "ECC"}, testLabel)
			if errs[i] == nil {
				errs[i] = s.CompleteKey(ctx, ids[i], "-----BEGIN CERTIFICATE REQUEST-----\n", spki(i))
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
func TestWriteAfterClose(t *testing.T) {
	s, _ := openTest(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BeginKey(context.Background(), &KeyRecord{}, testLabel); !errors.Is(err, ErrUnavailable) {
		t.Errorf("BeginKey after Close: %v, want ErrUnavailable", err)
	}
}
