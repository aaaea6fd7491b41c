package store

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestListPending: paging, both orders and the subject filter, with records
// in other states or with an operation under way left out.
func TestListPending(t *testing.T) { forEachBackend(t, testListPending) }

func testListPending(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	// Request times run backwards against ids, so the two orders differ.
	var ids []int64
	for i := range 5 {
		rec := &KeyRecord{Subject: fmt.Sprintf("CN=host%d.Example.com", i), RequestTime: base.Add(-time.Duration(i) * time.Minute)}
		id, err := s.BeginKey(ctx, rec, testPrefix)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CompleteKey(ctx, id, "-----BEGIN CERTIFICATE REQUEST-----\n", spki(int(id)), nil); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	newKeyIn(t, s, StateMarried)
	newKeyIn(t, s, StateGenerating)
	deleting := newKeyIn(t, s, StatePending)
	if err := s.BeginDelete(ctx, deleting, nil); err != nil {
		t.Fatal(err)
	}

	rev := func(in []int64) []int64 {
		out := make([]int64, len(in))
		for i, v := range in {
			out[len(in)-1-i] = v
		}
		return out
	}
	tests := []struct {
		name string
		q    PendingQuery
		want []int64
	}{
		{"time ascending", PendingQuery{Limit: 50}, rev(ids)},
		{"time descending", PendingQuery{Limit: 50, Descending: true}, ids},
		{"id ascending", PendingQuery{Sort: SortByID, Limit: 50}, ids},
		{"id descending", PendingQuery{Sort: SortByID, Descending: true, Limit: 50}, rev(ids)},
		{"page 1", PendingQuery{Sort: SortByID, Limit: 2}, ids[0:2]},
		{"page 2", PendingQuery{Sort: SortByID, Limit: 2, Offset: 2}, ids[2:4]},
		{"page 3", PendingQuery{Sort: SortByID, Limit: 2, Offset: 4}, ids[4:5]},
		{"past the end", PendingQuery{Sort: SortByID, Limit: 2, Offset: 10}, nil},
		{"subject filter, any case", PendingQuery{Sort: SortByID, Limit: 50, SubjectContains: "HOST3.example"}, ids[3:4]},
		{"subject filter, all", PendingQuery{Sort: SortByID, Limit: 50, SubjectContains: "example.com"}, ids},
		{"filter is literal, not a LIKE pattern", PendingQuery{Sort: SortByID, Limit: 50, SubjectContains: "host_"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, err := s.ListPending(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, r := range recs {
				got = append(got, r.ID)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ids = %v, want %v", got, tt.want)
			}
			if tt.q.Offset == 0 && tt.q.Limit == 50 {
				if n, err := s.CountPending(ctx, tt.q); err != nil || n != len(tt.want) {
					t.Errorf("CountPending = %d, %v; want %d", n, err, len(tt.want))
				}
			}
		})
	}
	for _, bad := range []PendingQuery{{Limit: 0}, {Limit: MaxPageSize + 1}, {Limit: 1, Offset: -1}, {Limit: 1, Sort: 7}} {
		if _, err := s.ListPending(ctx, bad); err == nil {
			t.Errorf("ListPending(%+v) succeeded", bad)
		}
	}

	t.Run("uses the state index", func(t *testing.T) {
		if s.d != sqliteDialect {
			t.Skip("a SQLite query plan")
		}
		rows, err := s.r.QueryContext(ctx, "EXPLAIN QUERY PLAN "+pendingSQL[SortByRequestTime][0], "", 0, "[]", "[]", 1, 0)
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
		if p := strings.Join(plan, "\n"); !strings.Contains(p, "keys_state_request_time") || strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("pending listing should walk keys_state_request_time without sorting:\n%s", p)
		}
	})
}

func TestListKeysAndLive(t *testing.T) { forEachBackend(t, testListKeysAndLive) }

func testListKeysAndLive(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	var all []int64
	for _, st := range []State{StatePending, StateMarried, StateFailed, StateGenerating, StateDeleted} {
		all = append(all, newKeyIn(t, s, st))
	}
	page1, err := s.ListKeys(ctx, KeyQuery{Limit: 3})
	if err != nil || len(page1) != 3 {
		t.Fatalf("page 1: %d records, %v", len(page1), err)
	}
	page2, err := s.ListKeys(ctx, KeyQuery{Limit: 3, AfterID: page1[2].ID})
	if err != nil || len(page2) != 2 || page2[0].ID != all[3] {
		t.Fatalf("page 2: %v, %v", page2, err)
	}
	married, err := s.ListKeys(ctx, KeyQuery{State: StateMarried, Limit: 10})
	if err != nil || len(married) != 1 || married[0].ID != all[1] {
		t.Errorf("married only: %v, %v", married, err)
	}
	if _, err := s.ListKeys(ctx, KeyQuery{State: "nope", Limit: 1}); err == nil {
		t.Error("ListKeys(unknown state) succeeded")
	}

	live, err := s.ListLive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, k := range live {
		got = append(got, k.ID)
		if k.KeyLabel != testLabel(k.ID) || k.UpdatedTime.IsZero() {
			t.Errorf("live key %+v lacks label or time", k)
		}
	}
	if want := []int64{all[0], all[1], all[3]}; !reflect.DeepEqual(got, want) {
		t.Errorf("ListLive ids = %v, want %v (generating, pending, married)", got, want)
	}
}

// TestListPendingScope: a scope keeps exactly the records Scope.Contains
// admits — by pattern, else by template in any ASCII case, never a record
// made for neither — before paging, and the count agrees.
func TestListPendingScope(t *testing.T) { forEachBackend(t, testListPendingScope) }

func testListPendingScope(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	made := []struct {
		pattern  int
		template string
	}{{1, ""}, {1, "WebServer"}, {3, ""}, {3, "WebServer"}, {0, "webserver"}, {0, "Mail"}, {0, ""}, {1, ""}}
	byID := map[int64]*KeyRecord{}
	for _, m := range made {
		rec := &KeyRecord{Subject: "CN=scope", EnrollmentPatternID: m.pattern, Template: m.template}
		id, err := s.BeginKey(ctx, rec, testPrefix)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CompleteKey(ctx, id, "-----BEGIN CERTIFICATE REQUEST-----\n", spki(int(id)), nil); err != nil {
			t.Fatal(err)
		}
		byID[id] = rec
	}
	for _, tc := range []struct {
		name  string
		scope *Scope
		want  int
	}{
		{"unscoped", nil, 8},
		{"pattern 1", &Scope{Patterns: []int{1}}, 3},
		{"patterns 1 and 3", &Scope{Patterns: []int{1, 3}}, 5},
		{"template, any case", &Scope{Templates: []string{"WEBSERVER"}}, 1},
		{"pattern 3 or template Mail", &Scope{Patterns: []int{3}, Templates: []string{"mail"}}, 3},
		{"empty scope", &Scope{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := PendingQuery{Sort: SortByID, Limit: MaxPageSize, Scope: tc.scope}
			recs, err := s.ListPending(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != tc.want {
				t.Errorf("%d records, want %d", len(recs), tc.want)
			}
			listed := map[int64]bool{}
			for _, r := range recs {
				listed[r.ID] = true
			}
			for id, rec := range byID {
				if listed[id] != tc.scope.Has(rec) {
					t.Errorf("record %d (pattern %d, template %q): listed %v, Contains %v", id, rec.EnrollmentPatternID, rec.Template, listed[id], tc.scope.Has(rec))
				}
			}
			if n, err := s.CountPending(ctx, q); err != nil || n != tc.want {
				t.Errorf("CountPending = %d, %v; want %d", n, err, tc.want)
			}
			if tc.want > 1 {
				q.Limit, q.Offset = 1, tc.want-1
				if last, err := s.ListPending(ctx, q); err != nil || len(last) != 1 || last[0].ID != recs[len(recs)-1].ID {
					t.Errorf("last page of 1: %v, %v; want record %d", last, err, recs[len(recs)-1].ID)
				}
			}
		})
	}
}
