package store

import "testing"

func TestStateMachine(t *testing.T) {
	allowed := map[[2]State]bool{
		{StateGenerating, StatePending}: true,
		{StateGenerating, StateFailed}:  true,
		{StatePending, StateMarried}:    true,
		{StatePending, StateDeleted}:    true,
		{StatePending, StateLost}:       true,
		{StateMarried, StateLost}:       true,
		{StateMarried, StateRetired}:    true,
	}
	all := append(States(), "", "bogus")
	for _, from := range all {
		for _, to := range all {
			if got := from.CanTransition(to); got != allowed[[2]State{from, to}] {
				t.Errorf("%q.CanTransition(%q) = %v", from, to, got)
			}
		}
	}
	tests := []struct {
		s               State
		valid, terminal bool
	}{
		{StateGenerating, true, false},
		{StatePending, true, false},
		{StateMarried, true, false},
		{StateFailed, true, true},
		{StateDeleted, true, true},
		{StateLost, true, true},
		{StateRetired, true, true},
		{"", false, false},
		{"Pending", false, false},
	}
	for _, tt := range tests {
		if got := tt.s.Valid(); got != tt.valid {
			t.Errorf("%q.Valid() = %v", tt.s, got)
		}
		if got := tt.s.Terminal(); got != tt.terminal {
			t.Errorf("%q.Terminal() = %v", tt.s, got)
		}
	}
}
