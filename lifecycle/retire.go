package lifecycle

import (
	"context"
	"errors"
	"time"

	"github.com/csrd/csrd/store"
)

// RetireRecords is what Retire and its reconciliation read and write.
type RetireRecords interface {
	Get(ctx context.Context, id int64) (*store.KeyRecord, error)
	BeginRetire(ctx context.Context, id int64, audit *store.AuditEntry) error
	FinishRetire(ctx context.Context, id int64, reason string) error
}

// RetireRequest says why a married key is retired and how that is audited.
type RetireRequest struct {
	// Reason is kept in the record ("renewed by record 12", "retired by
	// an operator").
	Reason string
	// Audit, when set, is appended in the transaction that commits the
	// decision, before the token is touched: the key's destruction is on
	// the audit chain before it happens.
	Audit *store.AuditEntry
}

// Retire ends the life of a married key: its key material and certificate
// object are destroyed in the token and the record becomes retired,
// keeping its certificate facts. The order is that of Delete:
//
//  1. the intent to retire is committed (with the audit row);
//  2. every object of the key is destroyed in the token;
//  3. the record becomes retired.
//
// A crash after 1 or 2 leaves the intent; reconciliation (or retiring
// again) finishes. Retiring a retired key changes nothing. Only a married
// key is retired: a pending one is deleted instead.
func (s *Service) Retire(ctx context.Context, id int64, req RetireRequest) error {
	unlock := s.locks.lock(id)
	defer unlock()
	rec, err := s.retires.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return newErr(ErrNotFound, "no key record with Id %d", id)
	}
	if err != nil {
		return err
	}
	switch {
	case rec.State == store.StateRetired:
		return nil
	case rec.State == store.StatePending:
		return newErr(ErrConflict, "the key of record %d is pending (no certificate yet): delete it instead of retiring it", id)
	case rec.State != store.StateMarried:
		return newErr(ErrConflict, "the key of record %d is %s: there is no key in the HSM to retire", id, rec.State)
	case rec.Intent != store.IntentNone && rec.Intent != store.IntentRetire:
		return newErr(ErrConflict, "the key of record %d is busy (%s); try again", id, rec.Intent)
	}
	if err := s.Locate(rec); err != nil {
		return err
	}
	if err := s.retires.BeginRetire(ctx, id, req.Audit); err != nil {
		return err
	}
	s.step("retire-recorded")
	ctx = context.WithoutCancel(ctx) // decided and audited: finish it
	if _, err := s.destroyKeyMaterial(ctx, rec); err != nil {
		s.log.Error().Err(err).Int64("record", id).Msg("retire: could not destroy the key; the record keeps its retire intent for reconciliation")
		return err
	}
	s.step("retire-destroyed")
	if err := s.retires.FinishRetire(ctx, id, req.Reason); err != nil {
		return err
	}
	s.log.Info().Int64("record", id).Str("label", rec.KeyLabel).Str("serial", rec.Cert.Serial).Str("reason", req.Reason).
		Msg("married key retired; key destroyed in the token")
	return nil
}

// finishRetires completes retirements a crash interrupted: whatever is
// left of the key is destroyed and the record becomes retired.
func (s *Service) finishRetires(ctx context.Context, scope []Token, cutoff time.Time, rep *ReconcileReport) error {
	recs, err := s.interrupted(ctx, store.IntentRetire, scope, cutoff, rep)
	if err != nil {
		return err
	}
	for _, r := range recs {
		err := func() error {
			unlock := s.locks.lock(r.ID)
			defer unlock()
			if _, err := s.destroyKeyMaterial(ctx, r); err != nil {
				return err
			}
			return s.retires.FinishRetire(ctx, r.ID, "retirement interrupted; finished by reconciliation")
		}()
		if errors.Is(err, store.ErrConflict) { // finished meanwhile
			continue
		}
		if err != nil {
			return err
		}
		rep.RetiresFinished++
		s.log.Warn().Int64("record", r.ID).Str("label", r.KeyLabel).Msg("reconciled an interrupted retirement")
	}
	return nil
}
