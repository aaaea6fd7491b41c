package store

import "testing"

// TestStats: every write is counted with its wait, every group commit
// once; writes that commit together share one.
func TestStats(t *testing.T) { forEachBackend(t, testStats) }

func testStats(t *testing.T, bk backend) {
	s := bk.open(t)
	before := s.Stats()
	newKeyIn(t, s, StatePending) // BeginKey, CompleteKey: two writes, two commits
	got := s.Stats()
	if w, c := got.Writes-before.Writes, got.Commits-before.Commits; w != 2 || c != 2 || got.WriteWait <= before.WriteWait {
		t.Errorf("after two writes: %d writes, %d commits, wait %v → %v", w, c, before.WriteWait, got.WriteWait)
	}
}
