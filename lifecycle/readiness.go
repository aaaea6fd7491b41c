package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/csrd/csrd/hsm"
)

// StateOK is a token's state in States while it takes new keys.
const StateOK = "ok"

// States says for /readyz and systemd's STATUS= what each token of the
// pool is doing, by label: StateOK, "connected; reconciling before it takes
// new keys", or why it is not connected, in hsm's fixed phrases (no path,
// PIN or code).
func (p *TokenPool) States() map[string]string {
	out := make(map[string]string, len(p.members))
	for _, t := range p.Tokens() {
		switch err := t.Healthy(); {
		case err != nil:
			out[t.Label()] = strings.TrimPrefix(hsm.Reason(err), fmt.Sprintf("token %q: ", t.Label()))
		case !p.Admitted(t):
			out[t.Label()] = "connected; reconciling before it takes new keys"
		default:
			out[t.Label()] = StateOK
		}
	}
	return out
}

// WaitingFor describes the tokens of states (see States) that are not
// StateOK, sorted, for STATUS=; "" when every token is in use.
func WaitingFor(states map[string]string) string {
	var parts []string
	for label, st := range states {
		if st != StateOK {
			parts = append(parts, fmt.Sprintf("token %q: %s", label, st))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// Ping is the readiness check of the HSM: csrd can serve while at least one
// admitted token of the pool answers (Generate moves to the healthy ones; a
// withheld one takes no keys yet). The error names every token that does
// not.
func (p *TokenPool) Ping(ctx context.Context) error {
	var errs []error
	for _, t := range p.Tokens() {
		if !p.Admitted(t) {
			errs = append(errs, fmt.Errorf("token %q not admitted yet: %s", t.Label(), hsm.Reason(t.Healthy())))
			continue
		}
		err := t.Ping(ctx)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
