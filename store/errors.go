package store

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mattn/go-sqlite3"
)

// Sentinel errors, matched with errors.Is. Returned errors wrap them with
// detail ("store: not found: key 5"); callers (the API's error mapper) turn
// them into status codes without looking at SQLite.
var (
	// ErrNotFound: no record with that id.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: the record is not in a state the operation starts from,
	// or a unique value (key label, key id) is already taken.
	ErrConflict = errors.New("store: conflict")
	// ErrStorageFull: SQLite reported the disk or database full (507).
	ErrStorageFull = errors.New("store: storage full")
	// ErrUnavailable: the database cannot be read or written — I/O error,
	// corruption, cannot open, read-only (503).
	ErrUnavailable = errors.New("store: database unavailable")
	// ErrBusy: the database stayed locked past the busy timeout, e.g. by
	// another process writing (503, retry).
	ErrBusy = errors.New("store: database busy")
)

// TransitionError reports a compare-and-set transition that found the record
// in another state. It matches ErrConflict.
type TransitionError struct {
	ID    int64
	State State   // the state the record is in
	From  []State // the states the transition starts from
	To    State
}

func (e *TransitionError) Error() string {
	from := make([]string, len(e.From))
	for i, s := range e.From {
		from[i] = string(s)
	}
	return fmt.Sprintf("store: key %d is %s, not %s", e.ID, e.State, strings.Join(from, " or "))
}

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *TransitionError) Unwrap() error { return ErrConflict }

// SchemaVersionError reports a database migrated by a newer csrd. Opening it
// with older code could silently drop or misread columns, so Open refuses.
type SchemaVersionError struct {
	Have  int // highest version recorded in the database
	Known int // highest version this binary embeds
}

func (e *SchemaVersionError) Error() string {
	return fmt.Sprintf("store: database schema version %d is newer than this csrd (%d)", e.Have, e.Known)
}

// dbErr wraps an error from database/sql with the operation, classifying
// SQLite result codes and PostgreSQL SQLSTATEs and connection failures
// (classifyPostgres) into the sentinels above. This is the only place that
// inspects sqlite3.Error, with postgres.go the only one that inspects pgx's.
func dbErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		if kind := classify(se); kind != nil {
			return fmt.Errorf("%w: %s: %w", kind, op, err)
		}
	} else if kind := classifyPostgres(err); kind != nil {
		return fmt.Errorf("%w: %s: %w", kind, op, err)
	}
	return fmt.Errorf("store: %s: %w", op, err)
}

func classify(se sqlite3.Error) error {
	switch se.Code {
	case sqlite3.ErrFull:
		return ErrStorageFull
	case sqlite3.ErrBusy, sqlite3.ErrLocked:
		return ErrBusy
	case sqlite3.ErrIoErr, sqlite3.ErrCorrupt, sqlite3.ErrNotADB, sqlite3.ErrCantOpen,
		sqlite3.ErrReadonly, sqlite3.ErrProtocol, sqlite3.ErrNomem:
		return ErrUnavailable
	}
	return nil
}

// isUnique reports a UNIQUE (or PRIMARY KEY) constraint violation.
func isUnique(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey
	}
	return pgUnique(err)
}
