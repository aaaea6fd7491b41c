package store

import (
	"context"
	"database/sql"
	"fmt"
)

// claimRecordSQL is a compare-and-set on a record's lease holder: it takes
// the lease only from the holder the caller read, so of two nodes that
// read the same holder one wins.
const claimRecordSQL = `UPDATE keys SET node = ? WHERE id = ? AND COALESCE(node, '') = ?`

// ClaimRecord leases record id to this Store's node (WithNode) for
// background work on it — an order, a renewal, a deploy hook, a
// retirement — taking it from holder, the lease holder the caller read
// ("" for none) and found gone, or confirming it when that is this node.
// Another node having taken it since is
// ErrConflict. A Store without a node (csrctl, one csrd) claims nothing.
func (s *Store) ClaimRecord(ctx context.Context, id int64, holder string) error {
	if s.node == "" {
		return nil
	}
	return s.withTx(ctx, "claim record", func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, claimRecordSQL, s.node, id, holder)
		if err != nil {
			return dbErr("claim record", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return dbErr("claim record", err)
		}
		return fmt.Errorf("%w: record %d is no longer leased to %q", ErrConflict, id, holder)
	})
}
