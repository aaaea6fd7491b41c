package enroll

import (
	"context"
	"errors"
	"strings"

	"golang.org/x/crypto/acme"

	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/store"
)

// RetireKey ends the life of a married key at an operator's request
// (POST /csrd/v1/keys/{id}/retire, csrctl key retire): when the key's
// certificate was enrolled here, its CA has revoke_on_retire and the
// certificate has not expired, it is revoked at the CA first (a CA that
// fails the revocation stops the retirement, nothing changed); then the key
// is destroyed in the token after audit, and its certificate is no longer
// renewed. Any married key can be retired, enrolled here or imported.
func (s *Service) RetireKey(ctx context.Context, id int64, audit *store.AuditEntry) error {
	rec, err := s.records.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return newErr(ErrNotFound, "no key record with Id %d", id)
	}
	if err != nil {
		return err
	}
	if rec.State == store.StateMarried {
		if err := s.keys.Locate(rec); err != nil {
			return err // before revoking: the node that reaches the token does both
		}
	}
	if err := s.revokeEarly(ctx, rec); err != nil {
		return err
	}
	return s.retire(ctx, id, "retired by an operator", audit)
}

// revokeEarly revokes the certificate of rec when its CA asks for that on
// early retirement.
func (s *Service) revokeEarly(ctx context.Context, rec *store.KeyRecord) error {
	if rec.State != store.StateMarried || !s.now().Before(rec.Cert.NotAfter) {
		return nil
	}
	r, err := s.records.GetRenewal(ctx, rec.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // imported, not enrolled here: csrd knows no CA for it
	}
	if err != nil {
		return err
	}
	c := s.cas[strings.ToLower(r.CA)]
	if c == nil || !c.cfg.RevokeOnRetire {
		return nil
	}
	if err := c.client.Revoke(ctx, rec.Cert.DER, acme.CRLReasonCessationOfOperation); err != nil {
		return err
	}
	s.log.Info().Int64("record", rec.ID).Str("ca", r.CA).Str("serial", rec.Cert.Serial).Msg("certificate revoked before its key is retired")
	return nil
}

// retire destroys the key through lifecycle.Retire and closes its renewal.
func (s *Service) retire(ctx context.Context, id int64, reason string, audit *store.AuditEntry) error {
	err := s.keys.Retire(ctx, id, lifecycle.RetireRequest{Reason: reason, Audit: audit})
	if err == nil || s.gone(ctx, id) {
		merr := s.records.MarkRenewalRetired(ctx, id)
		if merr != nil && !errors.Is(merr, store.ErrNotFound) && !errors.Is(merr, store.ErrConflict) {
			return merr
		}
	}
	return err
}

// gone reports whether record id has no key left to retire (lost, or
// retired already), so its renewal can close anyway.
func (s *Service) gone(ctx context.Context, id int64) bool {
	rec, err := s.records.Get(ctx, id)
	return err == nil && (rec.State == store.StateLost || rec.State == store.StateRetired)
}
