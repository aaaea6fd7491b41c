package lifecycle

import (
	"context"
	"errors"

	"github.com/csrd/csrd/store"
)

// WorkRecords lease a record's background work to this node.
type WorkRecords interface {
	ClaimRecord(ctx context.Context, id int64, holder string) error
}

// Locate returns nil when this csrd reaches the token of rec's key, else
// an *ElsewhereError naming that token: the operation belongs to a node
// that reaches it (the API forwards it there).
func (s *Service) Locate(rec *store.KeyRecord) error {
	if s.tokens.reaches(rec.TokenLabel, rec.TokenSerial) {
		return nil
	}
	return &ElsewhereError{ID: rec.ID, TokenLabel: rec.TokenLabel, TokenSerial: rec.TokenSerial}
}

// ClaimWork reports whether background work on rec — resuming its order,
// renewing its certificate, running its deploy hook, retiring its key —
// is this node's, and if so leases the record to it. The key must be on a
// token this node reaches, and no other live node may hold the record's
// lease; the lease is then taken by compare-and-set from the holder read,
// so of two nodes sharing the token only one works on a certificate, and
// a dead node's work passes to a live one. One csrd (no leases, see
// SetLeases) claims everything it reaches.
func (s *Service) ClaimWork(ctx context.Context, rec *store.KeyRecord) (bool, error) {
	if s.Locate(rec) != nil {
		return false, nil
	}
	if s.leases == nil {
		return true, nil
	}
	if held, err := s.leasedElsewhere(ctx, rec.Node); err != nil || held {
		return false, err
	}
	err := s.work.ClaimRecord(ctx, rec.ID, rec.Node)
	if errors.Is(err, store.ErrConflict) {
		return false, nil
	}
	return err == nil, err
}

// TakeWork leases rec to this node for work it has just created and that
// no node can be doing yet (a new order): by compare-and-set from the
// holder read, whether or not that holder is live.
func (s *Service) TakeWork(ctx context.Context, rec *store.KeyRecord) error {
	if s.leases == nil {
		return nil
	}
	return s.work.ClaimRecord(ctx, rec.ID, rec.Node)
}
