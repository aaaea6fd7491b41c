package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func testCert(n int) CertInfo {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return CertInfo{
		DER:        []byte(fmt.Sprint("der", n)),
		ChainPEM:   "-----BEGIN CERTIFICATE-----\n",
		Serial:     fmt.Sprintf("0A%02X", n),
		Issuer:     "CN=Test CA",
		Subject:    "CN=leaf",
		Thumbprint: fmt.Sprintf("%040X", n),
		NotBefore:  nb,
		NotAfter:   nb.AddDate(1, 0, 0),
	}
}

func TestDeleteIntent(t *testing.T) { forEachBackend(t, testDeleteIntent) }

func testDeleteIntent(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	id := newKeyIn(t, s, StatePending)

	if err := s.BeginDelete(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	rec, _ := s.Get(ctx, id)
	if rec.State != StatePending || rec.Intent != IntentDelete {
		t.Fatalf("after BeginDelete: %s/%q, want pending/delete", rec.State, rec.Intent)
	}
	// A retried delete continues; a marriage or loss must wait.
	if err := s.BeginDelete(ctx, id, nil); err != nil {
		t.Errorf("BeginDelete again: %v", err)
	}
	var be *BusyError
	if err := s.BeginMarriage(ctx, id, testCert(1), nil); !errors.As(err, &be) || be.Intent != IntentDelete || !errors.Is(err, ErrConflict) {
		t.Errorf("BeginMarriage during delete: %v, want *BusyError(delete)", err)
	}
	if err := s.MarkLost(ctx, id, "x", nil); !errors.As(err, &be) {
		t.Errorf("MarkLost during delete: %v, want *BusyError", err)
	}
	if recs, _ := s.ListByIntent(ctx, IntentDelete); len(recs) != 1 || recs[0].ID != id {
		t.Errorf("ListByIntent(delete) = %v", recs)
	}
	if err := s.FinishDelete(ctx, id, "deleted by test", nil); err != nil {
		t.Fatal(err)
	}
	rec, _ = s.Get(ctx, id)
	if rec.State != StateDeleted || rec.Intent != IntentNone || rec.FailReason != "deleted by test" {
		t.Errorf("after FinishDelete: %s/%q/%q", rec.State, rec.Intent, rec.FailReason)
	}
	var te *TransitionError
	if err := s.FinishDelete(ctx, id, "", nil); !errors.As(err, &te) || te.State != StateDeleted {
		t.Errorf("FinishDelete twice: %v, want *TransitionError", err)
	}

	for _, st := range []State{StateGenerating, StateMarried, StateFailed, StateLost} {
		t.Run("from "+string(st), func(t *testing.T) {
			id := newKeyIn(t, s, st)
			if err := s.BeginDelete(ctx, id, nil); !errors.As(err, &te) || te.State != st {
				t.Errorf("BeginDelete(%s) = %v, want *TransitionError", st, err)
			}
		})
	}
	if err := s.BeginDelete(ctx, 9999, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("BeginDelete(unknown) = %v, want ErrNotFound", err)
	}
}

func TestMarriageIntent(t *testing.T) { forEachBackend(t, testMarriageIntent) }

func testMarriageIntent(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	id := newKeyIn(t, s, StatePending)
	a, b := testCert(1), testCert(2)

	if err := s.BeginMarriage(ctx, id, a, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.BeginMarriage(ctx, id, a, nil); err != nil {
		t.Errorf("BeginMarriage with the same certificate again: %v", err)
	}
	var be *BusyError
	if err := s.BeginMarriage(ctx, id, b, nil); !errors.As(err, &be) || be.Intent != IntentMarry {
		t.Errorf("BeginMarriage with another certificate: %v, want *BusyError(marry)", err)
	}
	if err := s.BeginDelete(ctx, id, nil); !errors.As(err, &be) {
		t.Errorf("BeginDelete during marriage: %v, want *BusyError", err)
	}
	if err := s.FinishMarriage(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	got := rec.Cert
	if rec.State != StateMarried || rec.Intent != IntentNone || rec.MarriedTime.IsZero() ||
		!bytes.Equal(got.DER, a.DER) || got.Serial != a.Serial || got.Issuer != a.Issuer || got.Subject != a.Subject ||
		got.Thumbprint != a.Thumbprint || got.ChainPEM != a.ChainPEM || !got.NotBefore.Equal(a.NotBefore) || !got.NotAfter.Equal(a.NotAfter) {
		t.Errorf("married record = %s/%q %+v, want married with %+v", rec.State, rec.Intent, got, a)
	}
	var te *TransitionError
	if err := s.BeginMarriage(ctx, id, a, nil); !errors.As(err, &te) || te.State != StateMarried {
		t.Errorf("BeginMarriage on a married record: %v, want *TransitionError", err)
	}
	for name, find := range map[string]func() ([]*KeyRecord, error){
		"thumbprint": func() ([]*KeyRecord, error) { return s.FindByThumbprint(ctx, a.Thumbprint) },
		"serial":     func() ([]*KeyRecord, error) { return s.FindBySerial(ctx, "0a01") },
	} {
		if recs, err := find(); err != nil || len(recs) != 1 || recs[0].ID != id {
			t.Errorf("find by %s = %v, %v; want key %d", name, recs, err, id)
		}
	}

	t.Run("lost during marriage", func(t *testing.T) {
		id := newKeyIn(t, s, StatePending)
		if err := s.BeginMarriage(ctx, id, b, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.AbandonMarriage(ctx, id, "key gone", nil); err != nil {
			t.Fatal(err)
		}
		if rec, _ := s.Get(ctx, id); rec.State != StateLost || rec.Intent != IntentNone {
			t.Errorf("after AbandonMarriage: %s/%q", rec.State, rec.Intent)
		}
	})
	t.Run("aborted", func(t *testing.T) {
		id := newKeyIn(t, s, StatePending)
		if err := s.BeginMarriage(ctx, id, b, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.AbortMarriage(ctx, id); err != nil {
			t.Fatal(err)
		}
		rec, _ := s.Get(ctx, id)
		if rec.State != StatePending || rec.Intent != IntentNone || rec.Cert.DER != nil || rec.Cert.Thumbprint != "" {
			t.Errorf("after AbortMarriage: %s/%q %+v", rec.State, rec.Intent, rec.Cert)
		}
		if err := s.BeginMarriage(ctx, id, a, nil); err == nil {
			// a is married to the first record already, but the store does not
			// police that: one SPKI, one record is lifecycle's rule.
			_ = s.AbortMarriage(ctx, id)
		}
	})
	t.Run("bad certificate", func(t *testing.T) {
		id := newKeyIn(t, s, StatePending)
		bad := a
		bad.Thumbprint = "abc"
		if err := s.BeginMarriage(ctx, id, bad, nil); err == nil || errors.Is(err, ErrConflict) {
			t.Errorf("BeginMarriage with a bad thumbprint: %v", err)
		}
	})
}

func TestMarkLost(t *testing.T) { forEachBackend(t, testMarkLost) }

func testMarkLost(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	for _, st := range []State{StatePending, StateMarried} {
		id := newKeyIn(t, s, st)
		if err := s.MarkLost(ctx, id, "gone from token", nil); err != nil {
			t.Fatalf("MarkLost(%s): %v", st, err)
		}
		if rec, _ := s.Get(ctx, id); rec.State != StateLost || rec.FailReason != "gone from token" {
			t.Errorf("after MarkLost(%s): %s %q", st, rec.State, rec.FailReason)
		}
	}
	var te *TransitionError
	if err := s.MarkLost(ctx, newKeyIn(t, s, StateDeleted), "", nil); !errors.As(err, &te) {
		t.Errorf("MarkLost(deleted) = %v, want *TransitionError", err)
	}
}
