package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// testPrefix is the label prefix the tests begin records with, and
// testLabel the label a record with id gets.
const testPrefix = "csrd-"

func testLabel(id int64) string { return fmt.Sprintf("%s%d", testPrefix, id) }

func spki(n int) []byte {
	h := sha256.Sum256([]byte(fmt.Sprint("spki", n)))
	return h[:]
}

// newKeyIn creates a record and drives it into state st along allowed edges.
func newKeyIn(t *testing.T, s *Store, st State) int64 {
	t.Helper()
	ctx := context.Background()
	id, err := s.BeginKey(ctx, &KeyRecord{KeyType: "ECDSA", Curve: "P-256"}, testPrefix)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("driving key %d to %s: %v", id, st, err)
		}
	}
	switch st {
	case StateGenerating:
	case StateFailed:
		must(s.FailKey(ctx, id, "boom", nil))
	default:
		must(s.CompleteKey(ctx, id, "-----BEGIN CERTIFICATE REQUEST-----\n", spki(int(id)), nil))
		switch st {
		case StateMarried:
			must(s.Transition(ctx, id, []State{StatePending}, StateMarried, ""))
		case StateDeleted, StateLost:
			must(s.Transition(ctx, id, []State{StatePending}, st, ""))
		}
	}
	return id
}

func TestBeginKey(t *testing.T) { forEachBackend(t, testBeginKey) }

func testBeginKey(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	before := time.Now()
	rec := &KeyRecord{State: StateMarried, KeyLabel: "ignored"}
	id, err := s.BeginKey(ctx, rec, testPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if id <= 0 || rec.ID != id || rec.KeyLabel != testLabel(id) || rec.State != StateGenerating {
		t.Errorf("rec after BeginKey = {ID %d, KeyLabel %q, State %s}, id %d", rec.ID, rec.KeyLabel, rec.State, id)
	}
	if rec.RequestTime.Before(before.Add(-time.Second)) || rec.RequestTime.Location() != time.UTC {
		t.Errorf("RequestTime = %v, want now in UTC", rec.RequestTime)
	}
	got, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.KeyLabel != testLabel(id) || got.State != StateGenerating {
		t.Errorf("stored label %q state %s", got.KeyLabel, got.State)
	}

	t.Run("duplicate label rolls back", func(t *testing.T) {
		// The first record takes the label the next one will get.
		relabel := func(label string) {
			if _, err := s.w.ExecContext(ctx, `UPDATE keys SET key_label = ? WHERE id = ?`, label, id); err != nil {
				t.Fatal(err)
			}
		}
		relabel(testLabel(id + 1))
		defer relabel(testLabel(id))
		_, err := s.BeginKey(ctx, &KeyRecord{}, testPrefix)
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("err = %v, want ErrConflict", err)
		}
		if n := countAll(t, s); n != 1 {
			t.Errorf("%d records after the failed BeginKey, want 1", n)
		}
	})
	t.Run("duplicate key id", func(t *testing.T) {
		kid := []byte{1, 2, 3}
		if _, err := s.BeginKey(ctx, &KeyRecord{KeyID: kid}, testPrefix); err != nil {
			t.Fatal(err)
		}
		if _, err := s.BeginKey(ctx, &KeyRecord{KeyID: kid}, testPrefix); !errors.Is(err, ErrConflict) {
			t.Fatalf("err = %v, want ErrConflict", err)
		}
	})
	t.Run("empty label prefix", func(t *testing.T) {
		if _, err := s.BeginKey(ctx, &KeyRecord{}, ""); err == nil {
			t.Fatal("BeginKey with an empty label prefix succeeded")
		}
	})
	t.Run("invalid decision JSON", func(t *testing.T) {
		if _, err := s.BeginKey(ctx, &KeyRecord{Decision: json.RawMessage("{")}, testPrefix); err == nil {
			t.Fatal("BeginKey with invalid decision succeeded")
		}
	})
	t.Run("ids never reused", func(t *testing.T) {
		last, err := s.BeginKey(ctx, &KeyRecord{}, testPrefix)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.w.ExecContext(ctx, "DELETE FROM keys WHERE id = ?", last); err != nil {
			t.Fatal(err)
		}
		next, err := s.BeginKey(ctx, &KeyRecord{}, testPrefix)
		if err != nil {
			t.Fatal(err)
		}
		if next <= last {
			t.Errorf("id %d reused after deleting %d", next, last)
		}
	})
}

func TestGetRoundTrip(t *testing.T) { forEachBackend(t, testGetRoundTrip) }

func testGetRoundTrip(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	zone := time.FixedZone("CEST", 2*60*60)
	in := &KeyRecord{
		RequestTime:         time.Date(2025, 6, 1, 14, 30, 15, 120000000, zone),
		KeyID:               []byte{0x00, 0xde, 0xad, 0xbe, 0xef, 0xff},
		TokenLabel:          "csrd",
		TokenSerial:         "0123456789abcdef",
		KeyType:             "RSA",
		KeySize:             3072,
		Curve:               "",
		Subject:             "CN=host.example.com,O=Example\\, Inc.",
		SANs:                []string{"DNS:host.example.com", "IP:192.0.2.1", "email:a@example.com"},
		Template:            "WebServer",
		EnrollmentPatternID: 7,
		Decision:            json.RawMessage(`{"template":"WebServer","defaults":{"O":"Example"}}`),
	}
	id, err := s.BeginKey(ctx, in, testPrefix)
	if err != nil {
		t.Fatal(err)
	}
	const csrPEM = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
	if err := s.CompleteKey(ctx, id, csrPEM, spki(1), nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !got.RequestTime.Equal(in.RequestTime) || got.RequestTime.Location() != time.UTC {
		t.Errorf("RequestTime = %v, want %v in UTC", got.RequestTime, in.RequestTime)
	}
	if got.UpdatedTime.Before(got.RequestTime) || got.UpdatedTime.Location() != time.UTC {
		t.Errorf("UpdatedTime = %v", got.UpdatedTime)
	}
	want := *in
	want.ID, want.State, want.KeyLabel = id, StatePending, testLabel(id)
	want.CSRPEM, want.SPKISHA256 = csrPEM, spki(1)
	want.RequestTime, want.UpdatedTime = got.RequestTime, got.UpdatedTime // compared above
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("Get round trip:\n got  %+v\n want %+v", *got, want)
	}

	t.Run("empty optional fields come back empty", func(t *testing.T) {
		id, err := s.BeginKey(ctx, &KeyRecord{}, testPrefix)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got.KeyID != nil || got.SANs != nil || got.Decision != nil || got.SPKISHA256 != nil || got.KeySize != 0 {
			t.Errorf("empty record came back as %+v", got)
		}
	})
	t.Run("unknown id", func(t *testing.T) {
		if _, err := s.Get(ctx, 424242); !errors.Is(err, ErrNotFound) {
			t.Errorf("err = %v, want ErrNotFound", err)
		}
	})
}

func TestTransitions(t *testing.T) { forEachBackend(t, testTransitions) }

func testTransitions(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	complete := func(id int64) error { return s.CompleteKey(ctx, id, "PEM", spki(100+int(id)), nil) }
	fail := func(id int64) error { return s.FailKey(ctx, id, "token said no", nil) }
	trans := func(from []State, to State) func(int64) error {
		return func(id int64) error { return s.Transition(ctx, id, from, to, "why") }
	}
	tests := []struct {
		name     string
		start    State
		op       func(int64) error
		want     State // state after a successful op
		conflict bool  // expect ErrConflict; state unchanged
		invalid  bool  // expect a non-conflict error (edge not in the state machine)
	}{
		{"complete generating", StateGenerating, complete, StatePending, false, false},
		{"complete pending", StatePending, complete, "", true, false},
		{"complete failed", StateFailed, complete, "", true, false},
		{"complete married", StateMarried, complete, "", true, false},
		{"fail generating", StateGenerating, fail, StateFailed, false, false},
		{"fail pending", StatePending, fail, "", true, false},
		{"fail failed", StateFailed, fail, "", true, false},
		{"marry pending", StatePending, trans([]State{StatePending}, StateMarried), StateMarried, false, false},
		{"marry generating", StateGenerating, trans([]State{StatePending}, StateMarried), "", true, false},
		{"marry married", StateMarried, trans([]State{StatePending}, StateMarried), "", true, false},
		{"delete pending", StatePending, trans([]State{StatePending}, StateDeleted), StateDeleted, false, false},
		{"delete deleted", StateDeleted, trans([]State{StatePending}, StateDeleted), "", true, false},
		{"lose pending", StatePending, trans([]State{StatePending, StateMarried}, StateLost), StateLost, false, false},
		{"lose married", StateMarried, trans([]State{StatePending, StateMarried}, StateLost), StateLost, false, false},
		{"lose generating", StateGenerating, trans([]State{StatePending, StateMarried}, StateLost), "", true, false},
		{"lose lost", StateLost, trans([]State{StatePending, StateMarried}, StateLost), "", true, false},
		{"edge generating->married", StateGenerating, trans([]State{StateGenerating}, StateMarried), "", false, true},
		{"edge married->deleted", StateMarried, trans([]State{StateMarried}, StateDeleted), "", false, true},
		{"edge failed->pending", StateFailed, trans([]State{StateFailed}, StatePending), "", false, true},
		{"edge none", StatePending, trans(nil, StateLost), "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := newKeyIn(t, s, tt.start)
			before, err := s.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			err = tt.op(id)
			after, gerr := s.Get(ctx, id)
			if gerr != nil {
				t.Fatal(gerr)
			}
			switch {
			case tt.conflict:
				var te *TransitionError
				if !errors.Is(err, ErrConflict) || !errors.As(err, &te) || te.ID != id || te.State != tt.start {
					t.Fatalf("err = %v, want *TransitionError for key %d in %s", err, id, tt.start)
				}
				if !strings.HasPrefix(err.Error(), fmt.Sprintf("store: key %d is %s, not ", id, tt.start)) {
					t.Errorf("message = %q", err)
				}
			case tt.invalid:
				if err == nil || errors.Is(err, ErrConflict) || errors.Is(err, ErrNotFound) {
					t.Fatalf("err = %v, want a plain error for an illegal edge", err)
				}
			default:
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if after.State != tt.want {
					t.Errorf("state = %s, want %s", after.State, tt.want)
				}
				if after.UpdatedTime.Before(before.UpdatedTime) {
					t.Errorf("updated_time went backwards: %v -> %v", before.UpdatedTime, after.UpdatedTime)
				}
				return
			}
			if !reflect.DeepEqual(before, after) {
				t.Errorf("failed transition changed the record:\n before %+v\n after  %+v", before, after)
			}
		})
	}

	t.Run("exact conflict message", func(t *testing.T) {
		id := newKeyIn(t, s, StatePending)
		want := fmt.Sprintf("store: key %d is pending, not generating", id)
		if err := complete(id); err == nil || err.Error() != want {
			t.Errorf("err = %v, want %q", err, want)
		}
	})
	t.Run("fail reason stored", func(t *testing.T) {
		id := newKeyIn(t, s, StateFailed)
		got, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got.FailReason != "boom" {
			t.Errorf("FailReason = %q", got.FailReason)
		}
	})
	t.Run("unknown id", func(t *testing.T) {
		for name, op := range map[string]func(int64) error{
			"complete": complete, "fail": fail, "transition": trans([]State{StatePending}, StateMarried),
		} {
			if err := op(999999); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: err = %v, want ErrNotFound", name, err)
			}
		}
	})
	t.Run("complete validates input", func(t *testing.T) {
		id := newKeyIn(t, s, StateGenerating)
		if err := s.CompleteKey(ctx, id, "PEM", []byte{1}, nil); err == nil {
			t.Error("CompleteKey with a short hash succeeded")
		}
		if err := s.CompleteKey(ctx, id, "", spki(1), nil); err == nil {
			t.Error("CompleteKey without CSR succeeded")
		}
	})
}

func TestListAndCountByState(t *testing.T) { forEachBackend(t, testListAndCountByState) }

func testListAndCountByState(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	want := map[State][]int64{}
	for _, st := range []State{StatePending, StateGenerating, StatePending, StateFailed, StateMarried, StatePending, StateLost} {
		want[st] = append(want[st], newKeyIn(t, s, st))
	}
	counts, err := s.CountByState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range States() {
		t.Run(string(st), func(t *testing.T) {
			if counts[st] != len(want[st]) {
				t.Errorf("CountByState[%s] = %d, want %d", st, counts[st], len(want[st]))
			}
			recs, err := s.ListByState(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			var ids []int64
			for _, r := range recs {
				if r.State != st {
					t.Errorf("ListByState(%s) returned a %s record", st, r.State)
				}
				ids = append(ids, r.ID)
			}
			if !reflect.DeepEqual(ids, want[st]) {
				t.Errorf("ListByState(%s) ids = %v, want %v", st, ids, want[st])
			}
		})
	}
	if len(counts) != len(States()) {
		t.Errorf("CountByState has %d keys, want every state", len(counts))
	}
	if _, err := s.ListByState(ctx, "bogus"); err == nil {
		t.Error("ListByState(bogus) succeeded")
	}
}

func TestFindBySPKI(t *testing.T) { forEachBackend(t, testFindBySPKI) }

func testFindBySPKI(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	id := newKeyIn(t, s, StatePending) // SPKI is spki(id)
	newKeyIn(t, s, StatePending)

	recs, err := s.FindBySPKI(ctx, spki(int(id)))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].ID != id || !bytes.Equal(recs[0].SPKISHA256, spki(int(id))) {
		t.Errorf("FindBySPKI = %+v, want key %d", recs, id)
	}
	if recs, err := s.FindBySPKI(ctx, spki(-1)); err != nil || len(recs) != 0 {
		t.Errorf("FindBySPKI(unknown) = %v, %v; want none", recs, err)
	}
	if _, err := s.FindBySPKI(ctx, []byte("short")); err == nil {
		t.Error("FindBySPKI with a short hash succeeded")
	}

	t.Run("uses the index", func(t *testing.T) {
		if s.d != sqliteDialect {
			t.Skip("a SQLite query plan")
		}
		rows, err := s.r.QueryContext(ctx, "EXPLAIN QUERY PLAN "+findBySPKISQL, "00")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(plan, "\n"), "USING INDEX keys_spki_sha256") {
			t.Errorf("query plan does not use keys_spki_sha256:\n%s", strings.Join(plan, "\n"))
		}
	})
}

func TestConcurrentBeginKey(t *testing.T) { forEachBackend(t, testConcurrentBeginKey) }

func testConcurrentBeginKey(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	const n = 32
	var wg sync.WaitGroup
	ids := make([]int64, n)
	labels := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			rec := &KeyRecord{KeyID: []byte{byte(i), 0xaa}}
			ids[i], errs[i] = s.BeginKey(ctx, rec, testPrefix)
			labels[i] = rec.KeyLabel
			if errs[i] == nil {
				// Interleave reads and transitions with the inserts.
				if _, err := s.Get(ctx, ids[i]); err != nil {
					errs[i] = err
				} else {
					errs[i] = s.CompleteKey(ctx, ids[i], "PEM", spki(i), nil)
				}
			}
		})
	}
	wg.Wait()
	seenID, seenLabel := map[int64]bool{}, map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Errorf("goroutine %d: %v (busy: %v)", i, errs[i], errors.Is(errs[i], ErrBusy))
			continue
		}
		if seenID[ids[i]] || seenLabel[labels[i]] {
			t.Errorf("duplicate id %d or label %q", ids[i], labels[i])
		}
		seenID[ids[i]], seenLabel[labels[i]] = true, true
		if labels[i] != testLabel(ids[i]) {
			t.Errorf("label %q for id %d", labels[i], ids[i])
		}
	}
	counts, err := s.CountByState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[StatePending] != n {
		t.Errorf("%d pending records, want %d", counts[StatePending], n)
	}
}

func countAll(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.r.QueryRow("SELECT COUNT(*) FROM keys").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
