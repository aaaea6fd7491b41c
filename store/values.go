package store

import (
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Conversions between Go values and their stored form.

// timeLayout is RFC 3339 with a fixed nine-digit fraction: unlike
// time.RFC3339Nano it never drops trailing zeros, so for UTC times text
// order is time order and ORDER BY request_time is correct.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }

// Zero values become NULL so that partial indexes and "IS NULL" checks see
// absence, and a later migration can add NOT NULL constraints deliberately.

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullInt(n int) any {
	if n == 0 {
		return nil
	}
	return n
}

func nullHex(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return hex.EncodeToString(b)
}

func nullJSON(m json.RawMessage) any {
	if len(m) == 0 {
		return nil
	}
	return string(m)
}

func encodeSANs(sans []string) (any, error) {
	if len(sans) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(sans)
	if err != nil {
		return nil, fmt.Errorf("store: encode SANs: %w", err)
	}
	return string(b), nil
}

func decodeHex(s sql.NullString) ([]byte, error) {
	if !s.Valid {
		return nil, nil
	}
	return hex.DecodeString(s.String)
}
