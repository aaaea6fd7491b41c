package enroll

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/csrd/csrd/csr"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

// renew replaces the certificate of renewal r's record: a new key in the
// token, decided again under the policy in force (same subject, SANs, key
// type, template and pattern), a new order that names the old certificate
// in "replaces", the new certificate married. Every step is recorded
// before the next, so a renewal interrupted anywhere resumes where it
// stopped: the claim (a compare-and-set from scheduled) keeps two renewers
// apart, the new key is found again through its record's renewal_of, the
// order through its record. It returns the new record's id.
func (s *Service) renew(ctx context.Context, r *store.Renewal) (int64, error) {
	rec, err := s.records.Get(ctx, r.RecordID)
	if err != nil {
		return 0, err
	}
	if rec.State != store.StateMarried {
		// Retired by an operator or lost: nothing is left to renew.
		return 0, s.records.MarkRenewalRetired(ctx, r.RecordID)
	}
	c := s.cas[strings.ToLower(r.CA)]
	if c == nil {
		return 0, s.records.DeferRenewal(ctx, r.RecordID, r.State, fmt.Sprintf("CA %q is no longer configured", r.CA), s.now().Add(time.Hour))
	}
	if err := s.claim(ctx, r); err != nil {
		return 0, err
	}
	log := s.log.With().Int64("record", rec.ID).Str("ca", c.cfg.Name).Logger()
	next, err := s.renewalKey(ctx, rec, r)
	if err != nil {
		return 0, s.renewalFailed(ctx, r, err, true)
	}
	if err := s.records.SetRenewalKey(ctx, rec.ID, next.ID); err != nil {
		return 0, err
	}
	o, _, err := s.records.OpenOrder(ctx, next.ID, c.cfg.Name, rec.ID)
	if err != nil {
		return 0, s.renewalFailed(ctx, r, err, false)
	}
	j := s.start(o)
	<-j.done
	if j.err != nil {
		return 0, s.renewalFailed(ctx, r, j.err, false)
	}
	s.metrics.renewed("done")
	log.Info().Int64("new_record", next.ID).Int64("order", o.ID).Msg("certificate renewed with a new key")
	s.wake() // the deploy hook and the old key's retirement are the loop's
	return next.ID, nil
}

// claim makes r this renewer's: scheduled → renewing, or, resuming one
// already renewing, one attempt more.
func (s *Service) claim(ctx context.Context, r *store.Renewal) error {
	if r.State == store.RenewalScheduled {
		return s.records.ClaimRenewal(ctx, r.RecordID)
	}
	return s.records.RetryRenewal(ctx, r.RecordID)
}

// renewalKey returns the renewal's new key: the one already made (found by
// the renewal row or, after a crash before that was written, by the new
// record's renewal_of), else a new one from lifecycle.Generate.
func (s *Service) renewalKey(ctx context.Context, old *store.KeyRecord, r *store.Renewal) (*store.KeyRecord, error) {
	made, err := s.records.RenewalKeys(ctx, old.ID)
	if err != nil {
		return nil, err
	}
	for i := len(made) - 1; i >= 0; i-- {
		if k := made[i]; k.State == store.StatePending || k.State == store.StateMarried {
			return k, nil
		}
	}
	res, err := s.keys.Generate(ctx, lifecycle.GenerateRequest{
		Subject:             old.Subject,
		SANs:                sanMap(old.SANs),
		Key:                 policy.KeyRequest{KeyType: old.KeyType, KeyLength: old.KeySize, Curve: old.Curve, AlternativeKeyType: old.AltKeyType},
		Template:            old.Template,
		EnrollmentPatternID: old.EnrollmentPatternID,
		RenewalOf:           old.ID,
		Audit: &store.AuditEntry{Actor: "csrd", AuthMethod: "internal", Source: "renewal", Operation: "generate",
			Result: store.AuditOK, Status: 200, RequestID: fmt.Sprintf("renew-%d-%d", old.ID, r.Attempts+1),
			Detail: fmt.Sprintf("renewal of record %d", old.ID)},
	})
	if err != nil {
		return nil, err
	}
	return s.records.Get(ctx, res.ID)
}

// renewalFailed records a failed attempt: a refusal of the new key by the
// policy in force or by the token gives the claim back (no key was left;
// the old certificate stays), anything else keeps the renewal (and any new
// key) for the next attempt, after a back-off that doubles with each
// attempt.
func (s *Service) renewalFailed(ctx context.Context, r *store.Renewal, cause error, keyStep bool) error {
	ctx = context.WithoutCancel(ctx)
	next := s.now().Add(s.backoff(r.Attempts + 1))
	msg := detail(cause)
	if by := refusedBy(cause); keyStep && by != "" {
		s.metrics.renewed("refused")
		s.log.Warn().Int64("record", r.RecordID).Str("refused_by", by).Str("reason", msg).Time("next_attempt", next).
			Msg("renewal's new key refused by the " + by + "; the old certificate stays")
		if err := s.records.ReleaseRenewal(ctx, r.RecordID, "refused: "+msg, next); err != nil {
			return err
		}
		return cause
	}
	s.metrics.renewed("failed")
	s.log.Error().Int64("record", r.RecordID).Str("reason", msg).Time("next_attempt", next).Msg("renewal failed; it will be tried again")
	if err := s.records.DeferRenewal(ctx, r.RecordID, store.RenewalRenewing, msg, next); err != nil {
		return err
	}
	return cause
}

// refusedBy names what refused a renewal's new key — "policy in force"
// (the request as decided now) or "token" (a key type the token cannot
// make as csrd requires, hsm.require_sign_only, or a template it refuses:
// hsm.ErrRefused, nothing left in it) — or "" for a failure worth retrying
// soon (the token unavailable, the database).
func refusedBy(err error) string {
	var pe *policy.Error
	var ne *lifecycle.NotSupportedError
	switch {
	case errors.As(err, &pe), errors.Is(err, csr.ErrInvalidDN), errors.Is(err, csr.ErrInvalidSAN):
		return "policy in force"
	case errors.As(err, &ne), errors.Is(err, hsm.ErrRefused), errors.Is(err, hsm.ErrUnsupported):
		return "token"
	}
	return ""
}

// backoff is the pause before attempt n of a background step.
func (s *Service) backoff(n int) time.Duration {
	d := s.retryBase
	for i := 1; i < n && d < time.Hour; i++ {
		d *= 2
	}
	return min(d, time.Hour)
}

// sanMap turns a record's SANs (csr.SANs.Strings form) back into a
// Generate request's.
func sanMap(sans []string) map[string][]string {
	keys := map[string]string{"DNS": "dns", "IP": "ip", "URI": "uri", "email": "rfc822", "UPN": "upn", "RID": "registeredid"}
	out := map[string][]string{}
	for _, s := range sans {
		k, v, ok := strings.Cut(s, ":")
		if key := keys[k]; ok && key != "" {
			out[key] = append(out[key], v)
		}
	}
	return out
}

// RenewNow renews the certificate of record id at once (csrctl renew): the
// renewal is made due and run in the caller; it returns the new record's
// id. A certificate csrd did not enroll, or one being renewed, is refused.
func (s *Service) RenewNow(ctx context.Context, id int64) (int64, error) {
	r, err := s.records.GetRenewal(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return 0, newErr(ErrNotFound, "record %d has no certificate enrolled by csrd (only those are renewed)", id)
	}
	if err != nil {
		return 0, err
	}
	switch r.State {
	case store.RenewalScheduled:
	case store.RenewalRenewing:
		return 0, newErr(ErrConflict, "the certificate of record %d is being renewed (new key %d); see its record", id, r.NewRecordID)
	default:
		return 0, newErr(ErrConflict, "the certificate of record %d was renewed (new record %d) and is %s", id, r.NewRecordID, r.State)
	}
	return s.renew(ctx, r)
}

// Renew makes the certificate of record id due now; the background loop
// renews it.
func (s *Service) Renew(ctx context.Context, id int64) error {
	if rec, err := s.records.Get(ctx, id); err == nil {
		if err := s.keys.Locate(rec); err != nil {
			return err // renewed by a node that reaches the token: forwarded there
		}
	}
	err := s.records.ForceRenewal(ctx, id)
	var se *store.RenewalStateError
	switch {
	case errors.Is(err, store.ErrNotFound):
		return newErr(ErrNotFound, "record %d has no certificate enrolled by csrd (only those are renewed)", id)
	case errors.As(err, &se):
		return newErr(ErrConflict, "the certificate of record %d is %s", id, se.State)
	case err != nil:
		return err
	}
	s.wake()
	return nil
}
