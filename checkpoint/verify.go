package checkpoint

import (
	"crypto/ecdsa"
	"fmt"
	"slices"
	"time"

	"github.com/csrd/csrd/store"
)

// Result is what Verify found beyond the chain itself.
type Result struct {
	// Pinned: keys were given, and only checkpoints under them are
	// trusted. Otherwise each checkpoint was checked against the key
	// recorded beside it, which proves nothing against a database writer.
	Pinned bool
	// Trusted counts checkpoints whose signature holds (under a pinned key
	// when Pinned) and whose row is in the log as signed.
	Trusted int
	// UnpinnedKeys are the key ids of checkpoints not trusted because their
	// key was not pinned, with how many each made.
	UnpinnedKeys map[string]int
	// SignedThrough is the last row a trusted checkpoint fixes (0: none);
	// rows after it, up to LastID, are covered by the chain alone.
	SignedThrough int64
	LastID        int64
	// Newest is the trusted checkpoint made last (nil: none).
	Newest *store.AuditCheckpoint
}

// Unsigned is the number of rows no trusted checkpoint covers.
func (r Result) Unsigned() int64 { return r.LastID - r.SignedThrough }

// NewestTime is when Newest was made (zero: no trusted checkpoint).
func (r Result) NewestTime() time.Time {
	if r.Newest == nil {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339Nano, r.Newest.Time) // checked by Verify
	return t
}

// Error is a checkpoint that shows the log was changed: its signature does
// not hold, or it holds and the row it fixes is gone or different. It
// matches store.ErrAuditTampered.
type Error struct {
	Checkpoint int64 // checkpoint id
	Reason     string
}

func (e *Error) Error() string {
	return fmt.Sprintf("checkpoint: audit log tampered: checkpoint %d: %s", e.Checkpoint, e.Reason)
}

// Unwrap makes errors.Is(err, store.ErrAuditTampered) hold.
func (e *Error) Unwrap() error { return store.ErrAuditTampered }

// Verify checks the checkpoints of a chain store.VerifyAudit found intact.
// With pinned keys, a checkpoint naming a pinned key must verify under it
// and fix a row the log has as signed; checkpoints of other keys are
// counted, not trusted. Without, each checkpoint is checked against the
// key recorded with it (Result.Pinned false). The first checkpoint that
// shows a change is returned as *Error.
func Verify(rep store.AuditReport, pinned []*ecdsa.PublicKey) (Result, error) {
	res := Result{Pinned: len(pinned) > 0, LastID: rep.LastID, UnpinnedKeys: map[string]int{}}
	keys := map[string]*ecdsa.PublicKey{}
	for _, k := range pinned {
		id, err := KeyID(k)
		if err != nil {
			return res, err
		}
		keys[id] = k
	}
	var newest time.Time
	for i := range rep.Checkpoints {
		cp := &rep.Checkpoints[i]
		pub, err := signerOf(cp, keys, res.Pinned)
		if err != nil {
			return res, err
		}
		if pub == nil {
			res.UnpinnedKeys[cp.KeyID]++
			continue
		}
		at, err := check(cp, pub)
		if err != nil {
			return res, err
		}
		res.Trusted++
		res.SignedThrough = max(res.SignedThrough, cp.AuditID)
		if res.Newest == nil || !at.Before(newest) { // a tie: the later checkpoint
			res.Newest, newest = cp, at
		}
	}
	return res, nil
}

// signerOf returns the key cp must verify under: the pinned key it names
// (nil when it names none), or unpinned its recorded key, which must be
// the key its id names.
func signerOf(cp *store.AuditCheckpoint, keys map[string]*ecdsa.PublicKey, pinned bool) (*ecdsa.PublicKey, error) {
	if pinned {
		return keys[cp.KeyID], nil
	}
	pub, err := parseKey(cp.PublicKey)
	if err != nil {
		return nil, &Error{Checkpoint: cp.ID, Reason: fmt.Sprintf("its recorded public key is unusable (%v)", err)}
	}
	if id, err := KeyID(pub); err != nil || id != cp.KeyID {
		return nil, &Error{Checkpoint: cp.ID, Reason: "its recorded public key is not the key its key id names"}
	}
	return pub, nil
}

// check verifies cp's signature under pub and that its row is in the log.
func check(cp *store.AuditCheckpoint, pub *ecdsa.PublicKey) (time.Time, error) {
	what := fmt.Sprintf("(key %s, node %q, row %d, %s)", short(cp.KeyID), cp.Node, cp.AuditID, cp.Time)
	d, err := digest(cp)
	if err != nil {
		return time.Time{}, &Error{Checkpoint: cp.ID, Reason: fmt.Sprintf("%s is malformed: %v", what, err)}
	}
	at, terr := time.Parse(time.RFC3339Nano, cp.Time)
	if terr != nil || !ecdsa.VerifyASN1(pub, d, cp.Signature) {
		return time.Time{}, &Error{Checkpoint: cp.ID, Reason: what + ": the signature does not verify (the checkpoint was forged or edited)"}
	}
	if !cp.InLog {
		return time.Time{}, &Error{Checkpoint: cp.ID, Reason: fmt.Sprintf(
			"%s was signed in the token over row %d with hash %s, and the log no longer has that row with that hash: rows up to it were deleted, edited or re-hashed",
			what, cp.AuditID, cp.AuditHash)}
	}
	return at, nil
}

// SortedKeyIDs returns the ids of m in order, for stable reports.
func SortedKeyIDs(m map[string]int) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func short(keyID string) string {
	if len(keyID) > 16 {
		return keyID[:16]
	}
	return keyID
}
