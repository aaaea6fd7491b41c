package lifecycle

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/csr"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

// LabelPrefix starts the CKA_LABEL of every key csrd creates; reconciliation
// uses it to tell csrd's objects from anything else on a shared token.
const LabelPrefix = "csrd-"

// Label is the CKA_LABEL of the key belonging to record id.
func Label(id int64) string { return fmt.Sprintf("%s%d", LabelPrefix, id) }

// GenerateRecords is what Generate writes: the record before the key
// exists, then the completed record (pending) or the failed one.
type GenerateRecords interface {
	BeginKey(ctx context.Context, rec *store.KeyRecord, labelPrefix string) (int64, error)
	CompleteKey(ctx context.Context, id int64, csrPEM string, spkiSHA256 []byte, audit *store.AuditEntry) error
	CompleteHybridKey(ctx context.Context, id int64, csrPEM string, spkiSHA256 []byte, alt store.AltCompletion, audit *store.AuditEntry) error
	FailKey(ctx context.Context, id int64, reason string, audit *store.AuditEntry) error
}

// GenerateRequest is a Generate call, independent of the wire format.
type GenerateRequest struct {
	Subject             string
	SANs                map[string][]string
	Key                 policy.KeyRequest
	Template            string
	EnrollmentPatternID int
	// RenewalOf, for a renewal's new key, is the record it replaces; it is
	// written with the new record, so the renewal finds its key after a
	// crash.
	RenewalOf int64
	// Audit, when set, is the audit row of a successful Generate: it is
	// appended in the transaction that makes the record pending (its
	// RecordID and KeyLabel filled in), so it is on the chain exactly
	// when the key is. On failure nothing of it is written; the caller
	// audits the failure itself.
	Audit *store.AuditEntry
}

// GenerateResult is a successful Generate.
type GenerateResult struct {
	ID         int64
	KeyLabel   string
	TokenLabel string // the token that holds the key
	CSRPEM     string
}

// Generate decides the request, records it, creates the key pair in the
// token, builds the CSR signed by that key and completes the record.
func (s *Service) Generate(ctx context.Context, req GenerateRequest) (*GenerateResult, error) {
	d, err := s.decide(req)
	if err != nil {
		return nil, err
	}
	// A token that fails (removed, read-only, full) is taken out of
	// rotation and the key is made on another, as a new record: the failed
	// attempt's record is failed, or stays "generating" for reconciliation
	// when its token cannot even be cleaned up.
	var tried []Token
	for {
		tok, done := s.tokens.pick(tried)
		if tok == nil {
			if len(tried) == 0 {
				return nil, s.tokens.unavailable()
			}
			return nil, err
		}
		tried = append(tried, tok)
		var res *GenerateResult
		res, err = s.generateOn(ctx, tok, d)
		done(err)
		if err == nil || !tokenFailure(err) || ctx.Err() != nil {
			return res, err
		}
		s.log.Warn().Err(err).Str("token", tok.Label()).Msg("generate failed on a token; trying another")
	}
}

// decided is a Generate request as the policy decided it: what each
// attempt on a token makes.
type decided struct {
	dec   *policy.Decision
	spec  hsm.KeySpec
	rec   store.KeyRecord // the record to begin; each attempt adds its token and key IDs
	req   csr.Request     // the subject and SANs the CSR carries
	audit *store.AuditEntry
}

// decide parses the request and has the policy decide it; nothing is
// written or created before it has said yes.
func (s *Service) decide(req GenerateRequest) (*decided, error) {
	subject, err := csr.ParseDN(req.Subject)
	if err != nil {
		return nil, err
	}
	sans, err := csr.ParseSANs(req.SANs)
	if err != nil {
		return nil, err
	}
	dec, err := s.policy.Decide(policy.Request{
		Key:                 req.Key,
		Subject:             subject,
		SANs:                sans,
		Template:            req.Template,
		EnrollmentPatternID: req.EnrollmentPatternID,
	})
	if err != nil {
		return nil, err
	}
	// The CSR carries the subject as decided: the pattern's defaults
	// filled in where the request left them out.
	if dec.Subject != nil {
		subject = dec.Subject
	}
	template, patternID := req.Template, req.EnrollmentPatternID
	if dec.EnrollmentPatternID != 0 {
		template, patternID = dec.Template, dec.EnrollmentPatternID
	}
	spec, err := hsmSpec(dec.Key)
	if err != nil {
		return nil, err
	}
	decision, err := json.Marshal(dec)
	if err != nil {
		return nil, fmt.Errorf("lifecycle: encode decision: %w", err)
	}
	return &decided{
		dec:  dec,
		spec: spec,
		rec: store.KeyRecord{
			State:               store.StateGenerating,
			KeyType:             string(dec.Key.Algorithm),
			KeySize:             dec.Key.Bits,
			Curve:               dec.Key.Curve,
			Subject:             subject.String(),
			SANs:                sans.Strings(),
			Template:            template,
			EnrollmentPatternID: patternID,
			Decision:            decision,
			RenewalOf:           req.RenewalOf,
		},
		req:   csr.Request{Subject: subject, SANs: sans},
		audit: req.Audit,
	}, nil
}

// generateOn makes the key (and a hybrid's alternative key) on tok with the
// crash-safe order: record, key, CSR, completed record.
func (s *Service) generateOn(ctx context.Context, tok Token, d *decided) (*GenerateResult, error) {
	dec, spec := d.dec, d.spec
	rec, alt, err := s.newRecord(ctx, tok, d)
	if err != nil {
		return nil, err
	}
	// Step 1: the record exists, committed, before any key does — and it
	// names the alternative key too.
	id, err := s.gen.BeginKey(ctx, rec, LabelPrefix)
	if err != nil {
		return nil, err
	}
	s.step("recorded")
	log := s.log.With().Int64("record", id).Str("label", rec.KeyLabel).Str("token", tok.Label()).Logger()

	// From here on the work finishes even if the client goes away: the
	// record says "generating", and leaving it half done would only hand
	// the work to start-up reconciliation.
	ctx = context.WithoutCancel(ctx)
	ref := hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}

	// Step 2: the key pair is born in the token.
	key, err := tok.GenerateKeyPair(ctx, spec, ref)
	if err != nil {
		// The token may have created objects before failing (or failed
		// after creating them); look for them by label and destroy them.
		s.abandon(log, rec, nil, err)
		return nil, err
	}
	s.step("key-generated")

	// Step 2b: the alternative key, in the token or sealed by it.
	var altKey AltKey
	if alt != nil {
		if altKey, err = s.generateAlt(ctx, tok, rec, alt); err != nil {
			s.abandon(log, rec, nil, err)
			return nil, err
		}
		defer altKey.Wipe() // a sealed key's private half lives only this long
		s.step("alt-generated")
	}

	// Step 3: the CSR, signed inside the token (and by the alternative key).
	pem, spki, err := s.signCSR(d, key, altKey)
	if err != nil {
		s.abandon(log, rec, altKey, err)
		return nil, err
	}
	s.step("csr-built")

	// Step 4: the record becomes pending; only now is the key "known".
	if altKey != nil {
		err = s.completeHybrid(ctx, id, pem, spki, altKey, d.audit)
	} else {
		err = s.gen.CompleteKey(ctx, id, pem, spki, d.audit)
	}
	if err != nil {
		s.abandon(log, rec, altKey, err)
		return nil, err
	}
	s.step("completed")
	ev := log.Info().Str("key", dec.Key.String())
	if alt != nil {
		ev = ev.Str("alt_key", alt.set.String()).Str("alt_storage", string(alt.storage))
	}
	ev.Msg("key generated, CSR pending")
	return &GenerateResult{ID: id, KeyLabel: rec.KeyLabel, TokenLabel: tok.Label(), CSRPEM: pem}, nil
}

// newRecord is the record Generate begins on tok: it checks that tok can
// make the key, plans a hybrid's alternative key and names the key pair.
func (s *Service) newRecord(ctx context.Context, tok Token, d *decided) (*store.KeyRecord, *altPlan, error) {
	if err := tok.CanGenerate(d.spec); err != nil {
		if errors.Is(err, hsm.ErrUnsupported) {
			return nil, nil, &NotSupportedError{What: fmt.Sprintf("KeyType %s on HSM token %q", d.dec.Key, tok.Label()), Why: hsmDetail(err)}
		}
		return nil, nil, err
	}
	alt, err := s.planAlt(tok, d.dec)
	if err != nil {
		return nil, nil, err
	}
	keyID, err := tok.NewKeyID(ctx)
	if err != nil {
		return nil, nil, err
	}
	r := d.rec
	rec := &r
	rec.KeyID, rec.TokenLabel, rec.TokenSerial = keyID, tok.Label(), tok.Serial()
	if u := tok.Usage(d.spec); u.Sign && !u.SignOnly() {
		// CanGenerate allowed it: hsm.require_sign_only is false here.
		rec.KeyUsage = u.String()
	}
	if alt != nil {
		if err := s.recordAlt(ctx, tok, rec, alt); err != nil {
			return nil, nil, err
		}
	}
	return rec, alt, nil
}

// signCSR builds the request's CSR, signed by key (and by altKey, when
// set), and returns it as PEM with the SHA-256 of key's SPKI.
func (s *Service) signCSR(d *decided, key crypto.Signer, altKey AltKey) (pem string, spki []byte, err error) {
	creq := d.req
	var der []byte
	if altKey != nil {
		der, err = csr.BuildHybrid(s.rand, &creq, key, altKey)
	} else {
		der, err = csr.Build(s.rand, &creq, key)
	}
	if err != nil {
		return "", nil, err
	}
	if spki, err = csr.SPKISHA256(key.Public()); err != nil {
		return "", nil, err
	}
	return csr.PEM(der), spki, nil
}

// abandon undoes a Generate that failed after its record was written:
// destroy all key material the record names (see destroyKeyMaterial) and
// mark the record failed. If either step fails too (the disk that failed the
// write is still full, the token is briefly gone), the clean-up is retried
// in the background: the key must not outlive its failed request for longer
// than the fault lasts, and a record stuck in "generating" would otherwise
// wait for the next restart. Start-up reconciliation stays the backstop when
// the process dies first. Either way it is logged, not hidden. altKey, when
// already made, is wiped from memory.
func (s *Service) abandon(log zerolog.Logger, rec *store.KeyRecord, altKey AltKey, cause error) {
	if altKey != nil {
		altKey.Wipe()
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cleanupTimeout)
	defer cancel()
	if _, err := s.destroyKeyMaterial(ctx, rec); err != nil {
		log.Error().Err(err).AnErr("cause", cause).Msg("could not destroy key material after a failed generate; retrying in the background")
		go s.retryAbandon(log, rec, cause)
		return
	}
	if err := s.gen.FailKey(ctx, rec.ID, reason(cause), nil); err != nil {
		log.Error().Err(err).AnErr("cause", cause).Msg("could not mark record failed; retrying in the background")
		go s.retryAbandon(log, rec, cause)
		return
	}
	log.Warn().Err(cause).Msg("generate failed; key material destroyed, record marked failed")
}

// retryAbandon repeats abandon's clean-up, with exponential backoff, until
// it succeeds or abandonRetryFor has passed. destroyKeyMaterial is safe to
// repeat (objects already gone count as destroyed), and FailKey is a
// compare-and-set from "generating", so a record someone else finished
// (ErrConflict) ends the retry too.
func (s *Service) retryAbandon(log zerolog.Logger, rec *store.KeyRecord, cause error) {
	delay := s.abandonRetryDelay
	deadline := time.Now().Add(s.abandonRetryFor)
	for time.Now().Before(deadline) {
		time.Sleep(delay)
		delay = min(2*delay, abandonRetryMax)
		ctx, cancel := context.WithTimeout(context.Background(), s.cleanupTimeout)
		_, err := s.destroyKeyMaterial(ctx, rec)
		if err == nil {
			err = s.gen.FailKey(ctx, rec.ID, reason(cause), nil)
		}
		cancel()
		switch {
		case err == nil:
			log.Warn().Err(cause).Msg("generate failed; after retrying, key material destroyed and record marked failed")
			return
		case errors.Is(err, store.ErrConflict):
			log.Info().Msg("failed generate was finished elsewhere")
			return
		}
		log.Debug().Err(err).Dur("next", delay).Msg("clean-up of a failed generate still failing")
	}
	log.Error().AnErr("cause", cause).Dur("tried_for", s.abandonRetryFor).
		Msg("gave up cleaning up a failed generate; left for start-up reconciliation")
}

// Backoff of retryAbandon.
const (
	abandonRetryFirst = 100 * time.Millisecond
	abandonRetryMax   = 10 * time.Second
)

// reason is what a failed record says about its failure: the error text,
// which by construction of hsm and csr errors carries no PIN or key bytes.
func reason(err error) string {
	const max = 500
	s := err.Error()
	if len(s) > max {
		s = s[:max]
	}
	return s
}

func (s *Service) step(name string) {
	if s.afterStep != nil {
		s.afterStep(name)
	}
}

// ErrNotSupported marks a request the policy allows but this server (or its
// token) cannot carry out.
var ErrNotSupported = errors.New("lifecycle: not supported")

// NotSupportedError says what is not supported, and why when the token
// said.
type NotSupportedError struct{ What, Why string }

func (e *NotSupportedError) Error() string {
	msg := "lifecycle: " + e.What + " is not supported by this server"
	if e.Why != "" {
		msg += ": " + e.Why
	}
	return msg
}

// hsmDetail is the reason an hsm refusal gives in words.
func hsmDetail(err error) string {
	var he *hsm.Error
	if errors.As(err, &he) {
		return he.Detail()
	}
	return ""
}

func (e *NotSupportedError) Unwrap() error { return ErrNotSupported }

func hsmSpec(k policy.KeySpec) (hsm.KeySpec, error) {
	switch k.Algorithm {
	case policy.RSA:
		return hsm.KeySpec{Type: hsm.KeyRSA, Bits: k.Bits}, nil
	case policy.ECC:
		var c elliptic.Curve
		switch k.Curve {
		case "P-256":
			c = elliptic.P256()
		case "P-384":
			c = elliptic.P384()
		case "P-521":
			c = elliptic.P521()
		default:
			return hsm.KeySpec{}, fmt.Errorf("lifecycle: curve %q has no HSM mapping", k.Curve)
		}
		return hsm.KeySpec{Type: hsm.KeyECDSA, Bits: k.Bits, Curve: c}, nil
	case policy.Ed25519:
		return hsm.KeySpec{Type: hsm.KeyEd25519}, nil
	case policy.Ed448:
		return hsm.KeySpec{Type: hsm.KeyEd448}, nil
	}
	return hsm.KeySpec{}, &NotSupportedError{What: "KeyType " + string(k.Algorithm)}
}
