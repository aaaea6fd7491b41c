package store

import (
	"context"
	"database/sql"
)

// usageColumns extend keyColumns (migration 0030).
const usageColumns = `, key_usage`

const setKeyUsageSQL = `UPDATE keys SET key_usage = ? WHERE id = ?`

// beginUsage stores rec.KeyUsage with the record BeginKey inserts: what
// its key will be able to do when its token cannot restrict it to signing.
func beginUsage(ctx context.Context, s *Store, tx *sql.Tx, id int64, rec *KeyRecord) error {
	if rec.KeyUsage == "" {
		return nil
	}
	if _, err := s.txExec(ctx, tx, setKeyUsageSQL, rec.KeyUsage, id); err != nil {
		return dbErr("begin key", err)
	}
	return nil
}
