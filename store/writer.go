package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Group commit. SQLite takes one writer at a time, so every write goes
// through the one connection of the write pool, and under load a request
// would wait longer for that connection than the token takes to make its
// key. The writer goroutine therefore runs every write queued at the moment
// it starts a transaction in that one transaction and commits once. A
// caller returns only after the commit that made its write durable, so "the
// record is committed before the key exists" holds exactly as with one
// transaction per write; only the commits are shared. An idle writer starts
// a transaction as soon as a write arrives: a lone write waits for nobody.
//
// A write that fails must fail alone. The writes of a batch first run bare;
// almost all succeed, and on PostgreSQL each statement is a round trip to
// the server, so a SAVEPOINT and a RELEASE around every write would cost
// two of the five or six round trips a write takes. When one fails, the
// transaction is rolled back whole and the batch run again with each write
// inside its own SAVEPOINT, so the failing write is rolled back alone and
// the others commit. Writes are functions of the database they run
// against (a lost transaction is retried the same way), so running one
// twice is safe.

// maxBatch bounds the writes one transaction carries.
const maxBatch = 128

// Checkpoints. SQLite copies the WAL back into the database file, with an
// fsync of each, inside the commit that pushes the WAL past 1000 pages, and
// every write queued behind that commit waits for those fsyncs. The write
// connection therefore never checkpoints (wal_autocheckpoint=0); a PASSIVE
// checkpoint runs every checkpointInterval on a connection of the read
// pool, which copies what no reader needs without blocking the writer. A
// crash loses nothing: the WAL is the durable copy until it is
// checkpointed.
const (
	checkpointInterval  = time.Second
	noAutoCheckpointSQL = `PRAGMA wal_autocheckpoint = 0`
	checkpointSQL       = `PRAGMA wal_checkpoint(PASSIVE)`
)

type writeReq struct {
	ctx  context.Context
	op   string
	fn   func(context.Context, *sql.Tx) error
	done chan error
}

type writer struct {
	s     *Store
	queue chan *writeReq
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once

	// mu orders enqueueing against close: a write is either queued before
	// closed is set (and then committed before close returns) or refused.
	mu     sync.RWMutex
	closed bool
}

// errClosed: the store was closed; a write after that is not made.
var errClosed = fmt.Errorf("%w: store closed", ErrUnavailable)

func (s *Store) startWriter(ctx context.Context) error {
	w := &writer{s: s, queue: make(chan *writeReq, maxBatch), stop: make(chan struct{})}
	if s.d == sqliteDialect {
		if _, err := s.w.ExecContext(ctx, noAutoCheckpointSQL); err != nil {
			return dbErr("open", err)
		}
		w.wg.Add(1)
		go w.checkpoints()
	}
	s.writer = w
	w.wg.Add(1)
	go w.run()
	return nil
}

// checkpoints copies the WAL into the database file in the background.
// A failed checkpoint is retried at the next tick: the WAL keeps the data.
func (w *writer) checkpoints() {
	defer w.wg.Done()
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			_, _ = w.s.r.Exec(checkpointSQL)
		}
	}
}

func (w *writer) close() {
	if w == nil {
		return
	}
	w.once.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		close(w.stop)
		w.wg.Wait()
	})
}

// withTx runs fn in a write transaction (shared with the other writes
// queued at the same moment, see above), returning after the commit. fn
// wraps its own errors (they may be typed); withTx wraps only BEGIN and
// COMMIT failures.
//
// fn's statements run under the context fn is given, which carries ctx's
// values but not its cancellation. ctx decides whether the write starts (it
// is checked when the writer reaches it); once started, a write runs to its
// end. Interrupting a statement halfway would only turn a write that was
// about to succeed into one that failed, inside a transaction other writes
// share; and go-sqlite3 starts a goroutine per statement run under a
// cancellable context, to watch for the cancellation: two per BeginKey, for
// nothing.
func (s *Store) withTx(ctx context.Context, op string, fn func(context.Context, *sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return dbErr(op, err)
	}
	w := s.writer
	if w == nil {
		return fmt.Errorf("%w: %s", ErrReadOnly, op)
	}
	defer s.wrote(time.Now())
	r := &writeReq{ctx: ctx, op: op, fn: fn, done: make(chan error, 1)}
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return errClosed
	}
	select {
	case w.queue <- r:
	case <-ctx.Done():
		w.mu.RUnlock()
		return dbErr(op, ctx.Err())
	}
	w.mu.RUnlock()
	// Once queued the write is the writer's: waiting for its outcome must not
	// end early, or a caller could believe a committed record was not written.
	return <-r.done
}

func (w *writer) run() {
	defer w.wg.Done()
	for {
		var first *writeReq
		select {
		case first = <-w.queue:
		case <-w.stop:
			w.drain()
			return
		}
		w.batch(first)
	}
}

// batch commits first with whatever else is queued (up to maxBatch).
func (w *writer) batch(first *writeReq) {
	batch := []*writeReq{first}
more:
	for len(batch) < maxBatch {
		select {
		case r := <-w.queue:
			batch = append(batch, r)
		default:
			break more
		}
	}
	w.commit(batch)
}

// drain commits the writes queued before the store closed: none can
// arrive any more (closed is set before stop is closed).
func (w *writer) drain() {
	for {
		select {
		case r := <-w.queue:
			w.batch(r)
		default:
			return
		}
	}
}

const (
	savepointSQL = `SAVEPOINT csrd_write`
	releaseSQL   = `RELEASE csrd_write`
	rollbackSQL  = `ROLLBACK TO csrd_write`
)

// commit runs batch in one transaction and tells each write its outcome.
// A batch that failed on an error the dialect calls retryable — before its
// COMMIT, so nothing of it is committed — is tried again, a bounded number
// of times; a COMMIT whose answer was lost may have committed and is never
// tried again (the writes report ErrUnavailable).
func (w *writer) commit(batch []*writeReq) {
	var results []error
	for attempt := 0; ; attempt++ {
		var retry bool
		results, retry = w.try(batch)
		if !retry || attempt == len(writeRetryBackoff) {
			break
		}
		time.Sleep(writeRetryBackoff[attempt])
	}
	for i, r := range batch {
		r.done <- results[i]
	}
}

// try runs batch in one transaction, bare and then, if a write failed,
// guarded by savepoints (see above). retry reports a retryable error
// before COMMIT (the transaction is rolled back whole).
func (w *writer) try(batch []*writeReq) (results []error, retry bool) {
	results, retry, replay := w.attempt(batch, false)
	if replay {
		results, retry, _ = w.attempt(batch, true)
	}
	return results, retry
}

// attempt runs batch in one transaction, each write inside a savepoint
// when guarded. replay reports a bare run that a failing write stopped
// (rolled back whole, nothing committed).
func (w *writer) attempt(batch []*writeReq, guarded bool) (results []error, retry, replay bool) {
	ctx, cancel := w.batchContext()
	defer cancel()
	tx, err := w.s.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE via _txlock on SQLite
	if err != nil {
		results = make([]error, len(batch))
		for i, r := range batch {
			results[i] = dbErr(r.op, err)
		}
		return results, w.s.d.retryable(err), false
	}
	results, ok, lost, replay := w.apply(ctx, tx, batch, guarded)
	switch {
	case lost != nil:
		// The transaction is lost with every write in it: none may report
		// success, whatever its own statements did.
		_ = tx.Rollback()
		for i, r := range batch {
			if results[i] == nil {
				results[i] = dbErr(r.op, lost)
			}
		}
		return results, true, false
	case replay, ok == 0:
		_ = tx.Rollback()
	default:
		w.finish(tx, batch, results)
	}
	return results, false, replay
}

// finish commits tx; a failed COMMIT is every successful write's error.
func (w *writer) finish(tx *sql.Tx, batch []*writeReq, results []error) {
	if err := tx.Commit(); err != nil {
		for i, r := range batch {
			if results[i] == nil {
				results[i] = dbErr(r.op, err)
			}
		}
		return
	}
	w.s.stats.commits.Add(1)
}

// batchContext bounds one group commit's statements when the dialect has
// a write timeout.
func (w *writer) batchContext() (context.Context, context.CancelFunc) {
	if t := w.s.d.writeTimeout; t > 0 {
		return context.WithTimeout(context.Background(), t)
	}
	return context.Background(), func() {}
}

// apply runs the writes of batch in tx and returns each one's outcome and
// how many succeeded. It stops at the retryable error that lost the
// transaction (lost), or, in a bare run of several writes, at the first
// failure (replay): the transaction then holds the failing write's
// changes, or on PostgreSQL is aborted, and only a rollback undoes it. A
// lone write needs no replay: rolling its transaction back undoes exactly
// that write.
func (w *writer) apply(ctx context.Context, tx *sql.Tx, batch []*writeReq, guarded bool) (results []error, ok int, lost error, replay bool) {
	results = make([]error, len(batch))
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			results[i] = dbErr(r.op, err) // not started: nothing to undo
			continue
		}
		if guarded {
			results[i] = w.one(ctx, tx, r)
		} else {
			results[i] = r.fn(w.stmtContext(ctx, r), tx)
		}
		switch err := results[i]; {
		case err == nil:
			ok++
		case w.s.d.retryable(err):
			return results, ok, err, false
		case !guarded && len(batch) > 1:
			return results, ok, nil, true
		}
	}
	return results, ok, nil, false
}

// stmtContext is the context a write's statements run under: its
// caller's values without its cancellation (see withTx), bounded by the
// batch's deadline when the dialect has one. go-sqlite3 watches a
// cancellable context with a goroutine per statement, so SQLite's writes
// get none.
func (w *writer) stmtContext(batchCtx context.Context, r *writeReq) context.Context {
	if _, ok := batchCtx.Deadline(); ok {
		return valuesOf{Context: batchCtx, values: r.ctx}
	}
	return context.WithoutCancel(r.ctx)
}

// valuesOf is a context with one context's deadline and cancellation and
// another's values.
type valuesOf struct {
	context.Context
	values context.Context
}

func (v valuesOf) Value(key any) any { return v.values.Value(key) }

// one runs a single write inside its savepoint.
func (w *writer) one(batchCtx context.Context, tx *sql.Tx, r *writeReq) error {
	if _, err := tx.ExecContext(batchCtx, savepointSQL); err != nil {
		return dbErr(r.op, err)
	}
	if err := r.fn(w.stmtContext(batchCtx, r), tx); err != nil {
		if _, rbErr := tx.ExecContext(batchCtx, rollbackSQL); rbErr != nil {
			return errors.Join(err, dbErr(r.op, rbErr))
		}
		if _, rlErr := tx.ExecContext(batchCtx, releaseSQL); rlErr != nil {
			return errors.Join(err, dbErr(r.op, rlErr))
		}
		return err
	}
	if _, err := tx.ExecContext(batchCtx, releaseSQL); err != nil {
		return dbErr(r.op, err)
	}
	return nil
}
