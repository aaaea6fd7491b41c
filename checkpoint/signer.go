package checkpoint

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/store"
)

// Log is what a Checkpointer needs from the database; *store.Store has it.
type Log interface {
	AuditHead(ctx context.Context) (id int64, hash string, err error)
	AppendCheckpoint(ctx context.Context, cp *store.AuditCheckpoint) error
}

// KeySource returns the audit key to sign with: the first configured
// token's (hsm.Token.AuditKey). It fails while that token is away.
type KeySource func(ctx context.Context) (crypto.Signer, error)

// Defaults of Options.
const (
	DefaultInterval  = 10 * time.Second
	DefaultHeartbeat = 10 * time.Minute
)

// Options configures a Checkpointer.
type Options struct {
	Node      string        // this csrd's name in its checkpoints (the host name)
	Interval  time.Duration // how often new rows are signed; the unsigned window
	Heartbeat time.Duration // the longest time between checkpoints, new rows or not
}

// Checkpointer signs checkpoints of the audit log (see the package doc).
// Its methods are safe for concurrent use; one checkpoint is made at a time.
type Checkpointer struct {
	log  zerolog.Logger
	db   Log
	key  KeySource
	opts Options
	now  func() time.Time

	mu      sync.Mutex // one checkpoint at a time
	waiting error      // why the last attempt failed, logged once

	// How far the checkpoints reach (see Status), written under mu and
	// read without it: a scrape must not wait behind a signature in the
	// token.
	signedThrough atomic.Int64 // row the last checkpoint covered
	head          atomic.Int64 // the log's last row at the last attempt
	lastAtNanos   atomic.Int64 // when the last checkpoint was made; 0 before the first
}

// Status is how far the checkpoints reach.
type Status struct {
	SignedThrough int64     // the row the last checkpoint covered
	Head          int64     // the log's last row when a checkpoint was last tried
	LastAt        time.Time // when the last checkpoint was made; zero before the first
}

// Unsigned is how many rows the hash chain alone covers: those appended
// after the last checkpoint, as of the last attempt.
func (s Status) Unsigned() int64 { return max(0, s.Head-s.SignedThrough) }

// Status returns how far the checkpoints reach.
func (c *Checkpointer) Status() Status {
	st := Status{SignedThrough: c.signedThrough.Load(), Head: c.head.Load()}
	if n := c.lastAtNanos.Load(); n != 0 {
		st.LastAt = time.Unix(0, n).UTC()
	}
	return st
}

// New returns a Checkpointer; Run starts it.
func New(log zerolog.Logger, db Log, key KeySource, opts Options) *Checkpointer {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.Node == "" {
		opts.Node = "csrd"
	}
	return &Checkpointer{log: log.With().Str("component", "audit").Logger(), db: db, key: key, opts: opts,
		now: func() time.Time { return time.Now().UTC() }}
}

// Run makes checkpoints every Interval until ctx ends. The caller makes
// the first at start (covering rows written while csrd was stopped, e.g. by
// csrctl) and the last at shutdown, once nothing appends any more, by
// calling Checkpoint.
func (c *Checkpointer) Run(ctx context.Context) {
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = c.Checkpoint(ctx)
		}
	}
}

// Checkpoint signs the log's head now if rows were appended since this
// Checkpointer's last checkpoint or its heartbeat is due, and stores the
// checkpoint. It returns nil, nil when there was nothing to sign. A
// failure (the token away, the database unwritable) is logged once per
// outage and returned; the next call tries again.
func (c *Checkpointer) Checkpoint(ctx context.Context) (*store.AuditCheckpoint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, hash, err := c.db.AuditHead(ctx)
	if err != nil {
		return nil, c.failed(id, err)
	}
	c.head.Store(id)
	now := c.now()
	if last := c.Status(); !last.LastAt.IsZero() && id == last.SignedThrough && now.Sub(last.LastAt) < c.opts.Heartbeat {
		return nil, nil
	}
	cp, err := c.sign(ctx, id, hash, now)
	if err != nil {
		return nil, c.failed(id, err)
	}
	if err := c.db.AppendCheckpoint(ctx, cp); err != nil {
		return nil, c.failed(id, err)
	}
	c.signedThrough.Store(id)
	c.lastAtNanos.Store(now.UnixNano())
	if c.waiting != nil {
		c.log.Info().Int64("audit_id", id).Msg("audit checkpoints resumed")
		c.waiting = nil
	}
	c.log.Info().Int64("checkpoint", cp.ID).Int64("audit_id", id).Str("hash", hash).Str("key_id", cp.KeyID).Msg("audit checkpoint")
	return cp, nil
}

// sign makes the checkpoint of row id (hash) at now with the audit key.
func (c *Checkpointer) sign(ctx context.Context, id int64, hash string, now time.Time) (*store.AuditCheckpoint, error) {
	key, err := c.key(ctx)
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("checkpoint: the audit key is %T, not ECDSA", key.Public())
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	keyID, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	cp := &store.AuditCheckpoint{Time: now.UTC().Format(time.RFC3339Nano), Node: c.opts.Node, KeyID: keyID, PublicKey: spki,
		AuditID: id, AuditHash: hash}
	d, err := digest(cp)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if cp.Signature, err = key.Sign(rand.Reader, d, crypto.SHA256); err != nil {
		return nil, err
	}
	// A token that signs wrongly must not fill the log with checkpoints
	// every verify will call forged.
	if !ecdsa.VerifyASN1(pub, d, cp.Signature) {
		return nil, errors.New("checkpoint: the token's signature does not verify under its own public key")
	}
	return cp, nil
}

// failed logs the first failure of an outage (every later one at debug)
// and returns err.
func (c *Checkpointer) failed(id int64, err error) error {
	if c.waiting == nil {
		c.log.Warn().Err(err).Int64("signed_through", c.signedThrough.Load()).Int64("audit_id", id).
			Msg("audit checkpoint waits; rows after the last checkpoint are covered only by the hash chain until it succeeds")
	} else {
		c.log.Debug().Err(err).Msg("audit checkpoint still waits")
	}
	c.waiting = err
	return err
}
