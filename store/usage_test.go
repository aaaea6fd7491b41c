package store

import (
	"context"
	"testing"
)

// TestKeyUsage: a record whose token cannot restrict its key to signing
// carries the usage from BeginKey on, through every read; others carry
// none (sign only).
func TestKeyUsage(t *testing.T) { forEachBackend(t, testKeyUsage) }

func testKeyUsage(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	for _, usage := range []string{"sign, decrypt", ""} {
		rec := KeyRecord{KeyType: "RSA", KeySize: 2048, KeyID: []byte(usage + "x"), KeyUsage: usage}
		id, err := s.BeginKey(ctx, &rec, testPrefix)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CompleteKey(ctx, id, testPEM, spki(len(usage)), nil); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got.KeyUsage != usage {
			t.Errorf("record %d usage %q, want %q", id, got.KeyUsage, usage)
		}
	}
	pend, err := s.ListByState(ctx, StatePending)
	if err != nil || len(pend) != 2 || pend[0].KeyUsage != "sign, decrypt" || pend[1].KeyUsage != "" {
		t.Errorf("listed: %v %v", pend, err)
	}
}
