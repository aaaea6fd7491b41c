package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// OrderState is where an ACME order stands.
type OrderState string

// The order states.
const (
	// OrderOpen: the certificate is not married yet; a restart resumes it.
	OrderOpen OrderState = "open"
	// OrderMarried: the issued certificate is married to the key.
	OrderMarried OrderState = "married"
	// OrderFailed: the CA refused; Error says why. The key stays pending.
	OrderFailed OrderState = "failed"
)

// Order is one attempt to have a CA certify a pending key. Its ID is the
// KeyfactorRequestId of Enrollment/CSR.
type Order struct {
	ID       int64
	RecordID int64
	CA       string
	State    OrderState
	URL      string // the ACME order URL; "" until the CA created it
	Replaces int64  // a renewal: the record whose certificate this replaces
	Error    string // why it failed, or the last transient problem
	Created  time.Time
	Updated  time.Time
}

// Closing is what the transaction that marries an order's certificate
// schedules: the new certificate's renewal and, for a renewal, the old
// key's retirement.
type Closing struct {
	// RenewAt is when to renew the new certificate (zero: not computed yet).
	RenewAt time.Time
	// RetireOldAt is when the replaced key is retired (renewals only).
	RetireOldAt time.Time
	// Hook: a deploy hook is to run for the new certificate.
	Hook bool
}

const (
	orderColumns      = `id, record_id, ca, state, order_url, replaces, error, created_time, updated_time`
	getOrderSQL       = `SELECT ` + orderColumns + ` FROM orders WHERE id = ?`
	openOrderOfSQL    = `SELECT ` + orderColumns + ` FROM orders WHERE record_id = ? AND state = 'open'`
	latestOrderSQL    = `SELECT ` + orderColumns + ` FROM orders WHERE record_id = ? ORDER BY id DESC LIMIT 1`
	listOpenOrdersSQL = `SELECT ` + orderColumns + ` FROM orders WHERE state = 'open' ORDER BY id`
	insertOrderSQL    = `INSERT INTO orders (record_id, ca, state, replaces, created_time, updated_time)
VALUES (?, ?, 'open', ?, ?, ?)
RETURNING id` // both databases have RETURNING; pgx has no LastInsertId
	setOrderURLSQL = `UPDATE orders SET order_url = ?, updated_time = ?
WHERE id = ? AND state = 'open' AND (order_url IS NULL OR order_url = ?)`
	noteOrderSQL  = `UPDATE orders SET error = ?, updated_time = ? WHERE id = ? AND state = 'open'`
	failOrderSQL  = `UPDATE orders SET state = 'failed', error = ?, updated_time = ? WHERE id = ? AND state = 'open'`
	closeOrderSQL = `UPDATE orders SET state = 'married', error = NULL, updated_time = ? WHERE id = ? AND state = 'open'`
	// scheduleSQL is idempotent: a certificate has one renewal row.
	scheduleSQL = `INSERT INTO renewals (record_id, ca, state, renew_at, hook, updated_time)
VALUES (?, ?, 'scheduled', ?, ?, ?) ON CONFLICT (record_id) DO NOTHING`
	renewedSQL = `UPDATE renewals SET state = 'renewed', new_record_id = ?, retire_at = ?, next_attempt = NULL,
    last_error = NULL, updated_time = ?
WHERE record_id = ? AND state = 'renewing'`
)

// OpenOrder returns the open order of a record, or creates one: at most one
// order per key is open, so concurrent enrollments of one CSR share it.
// created says which happened.
func (s *Store) OpenOrder(ctx context.Context, recordID int64, ca string, replaces int64) (o *Order, created bool, err error) {
	err = s.withTx(ctx, "open order", func(ctx context.Context, tx *sql.Tx) error {
		o, err = scanOrder(tx.QueryRowContext(ctx, openOrderOfSQL, recordID))
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return dbErr("open order", err)
		}
		now := formatTime(s.now())
		var id int64
		if err := tx.QueryRowContext(ctx, insertOrderSQL, recordID, ca, nullID(replaces), now, now).Scan(&id); err != nil {
			return dbErr("open order", err)
		}
		created = true
		o, err = scanOrder(tx.QueryRowContext(ctx, getOrderSQL, id))
		return dbErr("open order", err)
	})
	return o, created, err
}

// SetOrderURL records the CA's URL of the order, once; a different URL for
// an order that has one is ErrConflict.
func (s *Store) SetOrderURL(ctx context.Context, id int64, url string) error {
	return s.orderUpdate(ctx, "set order url", id, setOrderURLSQL, url, formatTime(s.now()), id, url)
}

// NoteOrderError keeps an open order open with its latest problem.
func (s *Store) NoteOrderError(ctx context.Context, id int64, msg string) error {
	return s.orderUpdate(ctx, "note order error", id, noteOrderSQL, msg, formatTime(s.now()), id)
}

// FailOrder closes an open order the CA refused.
func (s *Store) FailOrder(ctx context.Context, id int64, msg string) error {
	return s.orderUpdate(ctx, "fail order", id, failOrderSQL, msg, formatTime(s.now()), id)
}

// CloseOrder records in one transaction that an open order's certificate
// is married: the order is closed, the certificate's renewal scheduled and,
// when the order replaces another certificate, that renewal marked renewed
// with its key's retirement time.
func (s *Store) CloseOrder(ctx context.Context, id int64, c Closing) error {
	return s.withTx(ctx, "close order", func(ctx context.Context, tx *sql.Tx) error {
		o, err := scanOrder(tx.QueryRowContext(ctx, getOrderSQL, id))
		if err != nil {
			return orderErr("close order", id, err)
		}
		if o.State != OrderOpen {
			return fmt.Errorf("%w: order %d is %s, not open", ErrConflict, id, o.State)
		}
		now := formatTime(s.now())
		if _, err := tx.ExecContext(ctx, closeOrderSQL, now, id); err != nil {
			return dbErr("close order", err)
		}
		hook := any(nil)
		if c.Hook {
			hook = "pending"
		}
		if _, err := tx.ExecContext(ctx, scheduleSQL, o.RecordID, o.CA, nullTime(c.RenewAt), hook, now); err != nil {
			return dbErr("close order", err)
		}
		if o.Replaces == 0 {
			return nil
		}
		_, err = tx.ExecContext(ctx, renewedSQL, o.RecordID, nullTime(c.RetireOldAt), now, o.Replaces)
		return dbErr("close order", err)
	})
}

// GetOrder returns order id, or an error matching ErrNotFound.
func (s *Store) GetOrder(ctx context.Context, id int64) (*Order, error) {
	o, err := scanOrder(s.queryRow(ctx, getOrderSQL, id))
	return o, orderErr("get order", id, err)
}

// LatestOrder returns a record's most recent order, or ErrNotFound.
func (s *Store) LatestOrder(ctx context.Context, recordID int64) (*Order, error) {
	o, err := scanOrder(s.queryRow(ctx, latestOrderSQL, recordID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: no order for key %d", ErrNotFound, recordID)
	}
	return o, dbErr("latest order", err)
}

// OpenOrders returns every open order, oldest first: the work a restart
// resumes.
func (s *Store) OpenOrders(ctx context.Context) ([]*Order, error) {
	rows, err := s.query(ctx, listOpenOrdersSQL)
	if err != nil {
		return nil, dbErr("open orders", err)
	}
	defer rows.Close()
	var out []*Order
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			return nil, dbErr("open orders", err)
		}
		out = append(out, o)
	}
	return out, dbErr("open orders", rows.Err())
}

// orderUpdate runs a compare-and-set UPDATE of an open order.
func (s *Store) orderUpdate(ctx context.Context, op string, id int64, query string, args ...any) error {
	return s.withTx(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return dbErr(op, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return dbErr(op, err)
		}
		o, err := scanOrder(tx.QueryRowContext(ctx, getOrderSQL, id))
		if err != nil {
			return orderErr(op, id, err)
		}
		if o.State != OrderOpen {
			return fmt.Errorf("%w: order %d is %s, not open", ErrConflict, id, o.State)
		}
		return fmt.Errorf("%w: order %d already has the URL %s", ErrConflict, id, o.URL)
	})
}

func orderErr(op string, id int64, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: order %d", ErrNotFound, id)
	}
	return dbErr(op, err)
}

func scanOrder(row rowScanner) (*Order, error) {
	var (
		o                Order
		url, msg         sql.NullString
		replaces         sql.NullInt64
		created, updated string
	)
	if err := row.Scan(&o.ID, &o.RecordID, &o.CA, &o.State, &url, &replaces, &msg, &created, &updated); err != nil {
		return nil, err
	}
	o.URL, o.Replaces, o.Error = url.String, replaces.Int64, msg.String
	var err error
	if o.Created, err = parseTime(created); err != nil {
		return nil, err
	}
	o.Updated, err = parseTime(updated)
	return &o, err
}

func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return formatTime(t)
}
