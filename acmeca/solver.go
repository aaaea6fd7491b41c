package acmeca

import (
	"context"

	"golang.org/x/crypto/acme"
)

// Solver answers one kind of challenge (RFC 8555 8).
type Solver interface {
	// Type is the challenge type answered ("http-01", "dns-01"); "" for
	// None, which takes whatever the CA offers.
	Type() string
	// Present makes the answer to ch reachable for the CA; cleanup removes
	// it once the CA has decided.
	Present(ctx context.Context, cl *acme.Client, z *acme.Authorization, ch *acme.Challenge) (cleanup func(), err error)
}

// None is challenge "none": the CA's authorizations are already valid (an
// EAB account whose names are pre-validated). Where the CA still lists a
// pending one, csrd sets nothing up, answers one offered challenge and lets
// the CA decide.
type None struct{}

// Type is "": any challenge the CA offers.
func (None) Type() string { return "" }

// Present prepares nothing.
func (None) Present(context.Context, *acme.Client, *acme.Authorization, *acme.Challenge) (func(), error) {
	return func() {}, nil
}
