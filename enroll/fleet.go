package enroll

import (
	"context"
)

// Several csrd nodes on one database each run this service. A key's
// enrollment, renewal, deploy hook and retirement belong to a node that
// reaches its token (Keys.Locate; the API forwards a request for another
// node's token there), and the background loop of exactly one such node
// does each certificate's work: it takes the record's lease
// (Keys.ClaimWork) and leaves a record whose lease another live node holds
// alone, so two nodes sharing a token never both work on one certificate.

// mine reports whether the background work of record id is this node's,
// taking its lease if so. An error is logged and counts as not mine: the
// next tick asks again.
func (s *Service) mine(ctx context.Context, id int64) bool {
	rec, err := s.records.Get(ctx, id)
	if err != nil {
		s.log.Error().Err(err).Int64("record", id).Msg("cannot read the record of enrollment work; trying again later")
		return false
	}
	ok, err := s.keys.ClaimWork(ctx, rec)
	if err != nil {
		s.log.Error().Err(err).Int64("record", id).Msg("cannot lease the record of enrollment work; trying again later")
		return false
	}
	return ok
}
