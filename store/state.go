package store

// State is the lifecycle state of a key record, stored as text.
type State string

// The record states; see the package documentation for the diagram.
const (
	// StateGenerating: the record exists, the key may or may not exist on
	// the token yet (a crash here is repaired by reconcile).
	StateGenerating State = "generating"
	// StatePending: key and CSR exist; waiting for the CA's certificate.
	StatePending State = "pending"
	// StateMarried: the certificate has been imported and matched to the key.
	StateMarried State = "married"
	// StateFailed: generation failed; the key was destroyed (or never made).
	StateFailed State = "failed"
	// StateDeleted: the key was deleted on request before marriage.
	StateDeleted State = "deleted"
	// StateLost: the key vanished from the token (found by reconcile).
	StateLost State = "lost"
	// StateRetired: a married key at the end of its life (renewed and
	// expired, or retired by an operator) was destroyed; the record keeps
	// its certificate facts.
	StateRetired State = "retired"
)

// States returns every state in lifecycle order, e.g. for metrics. It is a
// function, not a variable, so callers cannot change the set.
func States() []State {
	return []State{StateGenerating, StatePending, StateMarried, StateFailed, StateDeleted, StateLost, StateRetired}
}

// next is the state machine: the states s may move to. Keep it in sync with
// the diagram in doc.go.
func (s State) next() []State {
	switch s {
	case StateGenerating:
		return []State{StatePending, StateFailed}
	case StatePending:
		return []State{StateMarried, StateDeleted, StateLost}
	case StateMarried:
		return []State{StateLost, StateRetired}
	}
	return nil
}

// Valid reports whether s is one of the known states.
func (s State) Valid() bool {
	switch s {
	case StateGenerating, StatePending, StateMarried, StateFailed, StateDeleted, StateLost, StateRetired:
		return true
	}
	return false
}

// CanTransition reports whether a record in state s may move to state to.
func (s State) CanTransition(to State) bool {
	for _, v := range s.next() {
		if v == to {
			return true
		}
	}
	return false
}

// Terminal reports whether no transition leaves s.
func (s State) Terminal() bool { return s.Valid() && len(s.next()) == 0 }

func (s State) String() string { return string(s) }
