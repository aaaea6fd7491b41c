package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestNodeRegistry(t *testing.T) { forEachBackend(t, testNodeRegistry) }

func testNodeRegistry(t *testing.T, bk backend) {
	ctx := context.Background()
	s := bk.open(t)
	clock := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return clock }
	const timeout = 20 * time.Second
	a := Node{Name: "a", URL: "http://127.0.0.1:8081", Version: "v1", Tokens: []NodeToken{{"tok-a", "0001"}}}
	if err := s.RegisterNode(ctx, a, timeout); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterNode(ctx, Node{Name: "b", URL: "http://127.0.0.1:8082", Version: "v1"}, timeout); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(5 * time.Second)
	if err := s.Heartbeat(ctx, "a", a.URL, []NodeToken{{"tok-a", "0001"}, {"shared", "0009"}}); err != nil {
		t.Fatal(err)
	}
	nodes, err := s.ListNodes(ctx)
	if err != nil || len(nodes) != 2 {
		t.Fatalf("ListNodes = %+v, %v", nodes, err)
	}
	got := nodes[0]
	if got.Name != "a" || !got.Heartbeat.Equal(clock) || !got.Started.Equal(clock.Add(-5*time.Second)) ||
		!got.Reaches("", "0009") || !got.Reaches("tok-a", "") || got.Reaches("tok-b", "0002") || nodes[1].Tokens == nil {
		t.Errorf("node a = %+v", got)
	}
	if !got.Live(clock.Add(timeout-time.Second), timeout) || got.Live(clock.Add(timeout), timeout) {
		t.Error("Live does not follow the timeout")
	}

	// Another node under the same name, while a is live: refused.
	var inUse *NodeInUseError
	if err := s.RegisterNode(ctx, Node{Name: "a", URL: "http://127.0.0.1:9999"}, timeout); !errors.As(err, &inUse) || !errors.Is(err, ErrConflict) {
		t.Fatalf("second node named a: %v, want *NodeInUseError", err)
	}
	// a itself restarting (same URL) takes its row over at once.
	if err := s.RegisterNode(ctx, a, timeout); err != nil {
		t.Fatalf("a restarting: %v", err)
	}
	// Once a's heartbeat is older than the timeout, the name is free; the
	// old a, should it come back, learns it was replaced.
	clock = clock.Add(timeout)
	if err := s.RegisterNode(ctx, Node{Name: "a", URL: "http://127.0.0.1:9999"}, timeout); err != nil {
		t.Fatalf("reusing a dead node's name: %v", err)
	}
	if err := s.Heartbeat(ctx, "a", a.URL, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("heartbeat of the replaced node: %v, want ErrNotFound", err)
	}
}

// TestRecordLeases: the node a Store works for is recorded on the work it
// begins — a generation, a delete, a marriage, a retirement — and read back with the
// record and in the live listing.
func TestRecordLeases(t *testing.T) { forEachBackend(t, testRecordLeases) }

func testRecordLeases(t *testing.T, bk backend) {
	ctx := context.Background()
	s := bk.open(t)
	s.node = "node-a"
	gen := newKeyIn(t, s, StateGenerating)
	del := newKeyIn(t, s, StatePending)
	mar := newKeyIn(t, s, StatePending)
	ret := newKeyIn(t, s, StateMarried)
	s.node = "node-b"
	if err := s.BeginRetire(ctx, ret, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.BeginDelete(ctx, del, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.BeginMarriage(ctx, mar, testCert(1), nil); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[int64]string{gen: "node-a", del: "node-b", mar: "node-b", ret: "node-b"} {
		if rec, err := s.Get(ctx, id); err != nil || rec.Node != want {
			t.Errorf("record %d: node %q (%v), want %q", id, rec.Node, err, want)
		}
	}
	live, err := s.ListLive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range live {
		if k.ID == gen && k.Node != "node-a" || k.ID == del && k.Node != "node-b" {
			t.Errorf("live record %d: node %q", k.ID, k.Node)
		}
	}
	s.node = ""
	if id := newKeyIn(t, s, StateGenerating); id > 0 {
		if rec, _ := s.Get(ctx, id); rec.Node != "" {
			t.Errorf("a record begun without a node is leased to %q", rec.Node)
		}
	}
}

// TestClaimRecord: of two nodes that read the same lease holder, one takes
// the lease; a Store without a node claims nothing.
func TestClaimRecord(t *testing.T) { forEachBackend(t, testClaimRecord) }

func testClaimRecord(t *testing.T, bk backend) {
	ctx := context.Background()
	a, b := bk.openTwo(t)
	a.node, b.node = "node-a", "node-b"
	id := newKeyIn(t, a, StateMarried) // leased to node-a by its generation
	if err := a.ClaimRecord(ctx, id, "node-a"); err != nil {
		t.Errorf("a node claiming its own lease: %v", err)
	}
	if err := b.ClaimRecord(ctx, id, ""); !errors.Is(err, ErrConflict) {
		t.Errorf("claim from a holder read wrong: %v, want ErrConflict", err)
	}
	if err := b.ClaimRecord(ctx, id, "node-a"); err != nil {
		t.Fatal(err)
	}
	if err := a.ClaimRecord(ctx, id, "node-a"); !errors.Is(err, ErrConflict) {
		t.Errorf("the second claim from the same holder: %v, want ErrConflict", err)
	}
	if rec, _ := a.Get(ctx, id); rec.Node != "node-b" {
		t.Errorf("holder %q, want node-b", rec.Node)
	}
	a.node = ""
	if err := a.ClaimRecord(ctx, id, "node-x"); err != nil {
		t.Errorf("a Store without a node: %v", err)
	}
}
