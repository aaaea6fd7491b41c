package loadgen

import (
	"context"
	"fmt"
	"slices"

	"github.com/csrd/csrd/store"
)

// Records is what VerifyRecords reads; *store.Store satisfies it.
type Records interface {
	Get(ctx context.Context, id int64) (*store.KeyRecord, error)
}

// VerifyRecords checks that every accepted id names a record that holds a
// CSR and is in one of the states want (by default those with a live key,
// pending or married): an accepted request whose record is missing or
// failed is a lost record.
func VerifyRecords(ctx context.Context, db Records, accepted []int64, want ...store.State) error {
	if len(want) == 0 {
		want = []store.State{store.StatePending, store.StateMarried}
	}
	var (
		bad  []string
		nbad int
	)
	for _, id := range accepted {
		var why string
		rec, err := db.Get(ctx, id)
		switch {
		case err != nil:
			why = err.Error()
		case !slices.Contains(want, rec.State):
			why = "state " + string(rec.State)
		case rec.CSRPEM == "":
			why = "no CSR"
		default:
			continue
		}
		nbad++
		if len(bad) < 10 {
			bad = append(bad, fmt.Sprintf("%d: %s", id, why))
		}
	}
	if nbad > 0 {
		return fmt.Errorf("loadgen: %d of %d accepted requests have no good record (first: %v)", nbad, len(accepted), bad)
	}
	return nil
}
