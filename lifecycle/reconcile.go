package lifecycle

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/store"
)

// ReconcileRecords is what Reconcile reads and writes of its own; it
// finishes interrupted deletes and imports through DeleteRecords and
// MarriageRecords, as those use cases would.
type ReconcileRecords interface {
	Get(ctx context.Context, id int64) (*store.KeyRecord, error)
	ListByState(ctx context.Context, s store.State) ([]*store.KeyRecord, error)
	ListByIntent(ctx context.Context, in store.Intent) ([]*store.KeyRecord, error)
	ListLive(ctx context.Context) ([]store.LiveKey, error)
	FailKey(ctx context.Context, id int64, reason string, audit *store.AuditEntry) error
	MarkLost(ctx context.Context, id int64, reason string, audit *store.AuditEntry) error
	AppendAudit(ctx context.Context, e *store.AuditEntry) error
}

// ReconcileOptions controls Reconcile.
type ReconcileOptions struct {
	// DestroyOrphans destroys token objects that no record accounts for and
	// whose label has exactly the form csrd gives its keys (csrd-<id>,
	// csrd-<id>-alt). Without it they are only reported: nothing is
	// destroyed silently. Objects with csrd's prefix but another label are
	// never destroyed, only reported (Orphan.Foreign).
	DestroyOrphans bool
	// Keep names token objects that are never orphans, whatever their
	// label: csrd's TLS key when tls.key_file is a PKCS#11 URI.
	Keep []hsm.URI
	// MinAge leaves alone records changed less than MinAge ago, which a
	// running csrd may still be working on. csrd's own start-up check uses
	// 0 (it serves nothing yet); csrctl, which may run beside csrd, uses
	// the request timeout.
	MinAge time.Duration
	// Audit names who reconciles (Actor, AuthMethod, Source, RequestID) in
	// the audit row of every act that destroys or binds key material
	// (AuditReconcileDestroy, AuditReconcileRepair). Zero: csrd itself
	// (ReconcileActor), as at start-up; csrctl names its operator.
	Audit store.AuditEntry
}

// ReconcileReport says what Reconcile found and did.
type ReconcileReport struct {
	// Interrupted records were left "generating" by a crash; they are now failed.
	Interrupted int
	// KeysDestroyed of those still had a key in the token.
	KeysDestroyed int
	// DeletesFinished and MarriagesFinished were interrupted deletes and
	// imports, now completed.
	DeletesFinished   int
	MarriagesFinished int
	// MarriagesAborted could not finish (certificate conflict or key gone).
	MarriagesAborted int
	// RetiresFinished were interrupted retirements, now completed.
	RetiresFinished int
	// CertsRestored lists married records whose certificate object was
	// missing from the token and was written again from the database.
	CertsRestored []int64
	// Lost lists records whose key pair is no longer whole in the token —
	// either half gone, or both; they are now marked lost, and what is left
	// of the pair is listed among the Orphans.
	Lost []LostKey
	// Orphans lists token objects with csrd's label prefix that no live
	// record accounts for.
	Orphans          []Orphan
	OrphansDestroyed int
	// InProgress counts records skipped because they changed within MinAge
	// or during the check.
	InProgress int
	// OtherToken counts records whose key lives on another token.
	OtherToken int
	// Objects is the number of csrd-labelled token objects listed, Records
	// the number of live records compared with them.
	Objects, Records int
}

// LostKey is a record whose key pair is no longer whole in the token.
type LostKey struct {
	ID    int64
	Label string
	Was   store.State
	// Missing are the halves of the key pair (ClassPrivateKey,
	// ClassPublicKey) not in the token, AltMissing those of a hybrid's
	// token-resident alternative key pair. A pair with one half left is
	// as unusable as one with none: csrd signs with the private key and
	// finds it through its public key.
	Missing, AltMissing []hsm.ObjectClass
}

func (l LostKey) String() string {
	return fmt.Sprintf("record %d (%s, was %s): %s", l.ID, l.Label, l.Was, l.What())
}

// What says what is gone, e.g. "the public key is gone from the token".
func (l LostKey) What() string {
	var parts []string
	if len(l.Missing) > 0 {
		parts = append(parts, "the "+halves(l.Missing))
	}
	if len(l.AltMissing) > 0 {
		parts = append(parts, "the alternative "+halves(l.AltMissing))
	}
	verb := "is"
	if len(parts) > 1 || len(l.Missing) > 1 || len(l.AltMissing) > 1 {
		verb = "are"
	}
	return strings.Join(parts, " and ") + " " + verb + " gone from the token"
}

func halves(cs []hsm.ObjectClass) string {
	switch {
	case len(cs) == 2:
		return "private and public keys"
	case len(cs) == 1 && cs[0] == hsm.ClassPublicKey:
		return "public key"
	}
	return "private key"
}

// missingHalves returns the halves of a key pair that g lacks (g nil:
// both), private key first.
func missingHalves(g *objectGroup) []hsm.ObjectClass {
	if g == nil {
		return missingOf(nil)
	}
	return missingOf(g.classes)
}

// missingOf names the halves of a key pair classes lacks.
func missingOf(classes []hsm.ObjectClass) []hsm.ObjectClass {
	var out []hsm.ObjectClass
	for _, c := range []hsm.ObjectClass{hsm.ClassPrivateKey, hsm.ClassPublicKey} {
		if !hasClass(classes, c) {
			out = append(out, c)
		}
	}
	return out
}

// Orphan is a group of token objects sharing a label and CKA_ID that no
// live record owns.
type Orphan struct {
	Ref     hsm.KeyRef
	Classes []hsm.ObjectClass
	Reason  string
	// Foreign: the label starts with csrd's prefix but is not one csrd
	// gives its keys (e.g. an operator's "csrd-tls"), so csrd did not make
	// it and never destroys it.
	Foreign   bool
	Destroyed bool
}

func (o Orphan) String() string {
	cs := make([]string, len(o.Classes))
	for i, c := range o.Classes {
		cs[i] = c.String()
	}
	return fmt.Sprintf("label=%q id=%s objects=%s: %s", o.Ref.Label, hex.EncodeToString(o.Ref.ID), strings.Join(cs, ","), o.Reason)
}

// Reconcile compares the database with the token and repairs what a crash
// or someone working behind csrd's back left:
//
//   - records still "generating" (a crash inside Generate): any key under
//     their label is destroyed and the record marked failed;
//   - interrupted deletes and imports (records with an intent) are finished;
//   - pending and married records whose key pair is not whole (the private
//     key, the public key or both gone) are marked lost, and what is left of
//     the pair is an orphan; married ones whose certificate object is gone
//     get it written again;
//   - token objects with csrd's label prefix and no live record are listed
//     as orphans, and destroyed only with DestroyOrphans and only when their
//     label has exactly the form csrd gives its keys; opts.Keep and the
//     sealing key are never orphans.
//
// The token is listed once (one C_FindObjects pass), then the live records
// are read once, in that order: a record is always committed before its key
// is created, so an object in the listing whose record is missing from the
// later read is truly unaccounted for. Records changed after the listing
// began are not judged lost. Reconcile stops at the first error that could
// make it misjudge; everything it did up to there is in the report.
//
// Every act that destroys or binds key material appends an audit row by
// opts.Audit (AuditReconcileDestroy, AuditReconcileRepair): in the
// transaction that fails, deletes or marries the record, or, where no
// record changes (an orphan destroyed, a certificate object written again),
// before the token is touched. A row that cannot be written stops
// Reconcile with that act undone.
//
// Reconcile covers the tokens of the pool that are not withheld (see
// Admit); records on a withheld token are left for its admission.
func (s *Service) Reconcile(ctx context.Context, opts ReconcileOptions) (ReconcileReport, error) {
	return s.reconcile(ctx, opts, s.tokens.admitted())
}

// Admit reconciles token t — one csrd started without, withheld from the
// pool — exactly as the start-up reconciliation would have (MinAge 0:
// while withheld, no Generate can have used it, and Delete and Import
// share reconciliation's per-record locks), and then puts it into rotation.
// On error t stays withheld; Admit may be called again.
func (s *Service) Admit(ctx context.Context, t Token) (ReconcileReport, error) {
	rep, err := s.reconcile(ctx, ReconcileOptions{}, []Token{t})
	if err != nil {
		return rep, err
	}
	s.recordProfile(ctx, t)
	s.tokens.admit(t)
	s.log.Info().Str("token", t.Label()).Str("serial", t.Serial()).Msg("token reconciled and admitted to the pool")
	return rep, nil
}

// reconcile is Reconcile for the records and objects of the tokens in scope.
func (s *Service) reconcile(ctx context.Context, opts ReconcileOptions, scope []Token) (ReconcileReport, error) {
	var rep ReconcileReport
	cutoff := s.now().Add(-opts.MinAge)
	opts.Audit = s.reconciler(opts.Audit)
	if err := s.finishGenerating(ctx, scope, cutoff, opts.Audit, &rep); err != nil {
		return rep, err
	}
	if err := s.finishDeletes(ctx, scope, cutoff, opts.Audit, &rep); err != nil {
		return rep, err
	}
	if err := s.finishMarriages(ctx, scope, cutoff, opts.Audit, &rep); err != nil {
		return rep, err
	}
	if err := s.finishRetires(ctx, scope, cutoff, &rep); err != nil {
		return rep, err
	}
	// Each token in scope is listed, then the live records read, in
	// that order (see above), and compared with the records on it.
	for i, tok := range scope {
		listed := s.now()
		objs, err := tok.ListObjects(ctx, LabelPrefix)
		if err != nil {
			return rep, err
		}
		// The sealing and audit keys are csrd's own, owned by no record:
		// neither counted nor judged.
		objs = slices.DeleteFunc(objs, func(o hsm.Object) bool { return hsm.ServiceObject(o.Ref.Label) })
		live, err := s.recon.ListLive(ctx)
		if err != nil {
			return rep, err
		}
		rep.Objects += len(objs)
		if i == 0 {
			rep.Records = len(live)
		}
		groups := groupObjects(objs)
		pass := tokenPass{tok: tok, first: i == 0, live: live, groups: groups, listed: listed, cutoff: cutoff, who: opts.Audit}
		if err := s.checkLive(ctx, pass, &rep); err != nil {
			return rep, err
		}
		if err := s.checkOrphans(ctx, tok, groups, opts, &rep); err != nil {
			return rep, err
		}
	}
	s.logReport(rep)
	return rep, nil
}

// finishGenerating fails records a crash left "generating": nobody was
// handed their CSR, so their key (if it was made) is destroyed. The audit
// row commits with the record's failure.
func (s *Service) finishGenerating(ctx context.Context, scope []Token, cutoff time.Time, who store.AuditEntry, rep *ReconcileReport) error {
	recs, err := s.recon.ListByState(ctx, store.StateGenerating)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if in, other := s.inScope(r, scope); !in {
			if other {
				rep.OtherToken++ // its key is not here: destroying "nothing" would lie
			}
			continue
		}
		if held, err := s.leasedElsewhere(ctx, r.Node); err != nil {
			return err
		} else if held || r.UpdatedTime.After(cutoff) {
			rep.InProgress++
			continue
		}
		rep.Interrupted++
		n, err := s.destroyKeyMaterial(ctx, r)
		if err != nil {
			return err
		}
		rep.KeysDestroyed += n
		row := reconcileRow(who, AuditReconcileDestroy,
			fmt.Sprintf("interrupted generate: key material destroyed (%d key pairs were in the token), record failed", n))
		if err := s.recon.FailKey(ctx, r.ID, "interrupted before the CSR was recorded; reconciled", row); err != nil {
			return err
		}
		s.log.Warn().Int64("record", r.ID).Str("label", r.KeyLabel).Int("keys_destroyed", n).
			Msg("reconciled an interrupted generate")
	}
	return nil
}

// interrupted returns the records whose intent reconciliation may finish:
// those on this token (another token's key is not here, so acting on it
// would lie) whose intent is older than cutoff (a younger one may still be
// in progress in a running csrd). The others are counted in rep.
func (s *Service) interrupted(ctx context.Context, intent store.Intent, scope []Token, cutoff time.Time, rep *ReconcileReport) ([]*store.KeyRecord, error) {
	recs, err := s.recon.ListByIntent(ctx, intent)
	if err != nil {
		return nil, err
	}
	var out []*store.KeyRecord
	for _, r := range recs {
		in, other := s.inScope(r, scope)
		switch {
		case other:
			rep.OtherToken++
		case !in: // a withheld token's, or another pass's
		case r.UpdatedTime.After(cutoff):
			rep.InProgress++
		default:
			held, err := s.leasedElsewhere(ctx, r.Node)
			if err != nil {
				return nil, err
			}
			if held {
				rep.InProgress++
				continue
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// Leases says whether a record's unfinished work belongs to another live
// csrd node (a fleet on one database); *cluster.Registry implements it.
type Leases interface {
	HeldElsewhere(ctx context.Context, node string) (bool, error)
}

// SetLeases makes reconciliation leave alone the work in progress that
// another live node holds the lease on: with a token several nodes share,
// a node must never finish (destroying its key) a generation another is
// still making. Without it (one csrd) only MinAge protects running work.
func (s *Service) SetLeases(l Leases) { s.leases = l }

func (s *Service) leasedElsewhere(ctx context.Context, node string) (bool, error) {
	if s.leases == nil || node == "" {
		return false, nil
	}
	return s.leases.HeldElsewhere(ctx, node)
}

// finishDeletes destroys the key material of records a crash left with
// the intent to delete, and marks them deleted with their audit row.
func (s *Service) finishDeletes(ctx context.Context, scope []Token, cutoff time.Time, who store.AuditEntry, rep *ReconcileReport) error {
	recs, err := s.interrupted(ctx, store.IntentDelete, scope, cutoff, rep)
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
			row := reconcileRow(who, AuditReconcileDestroy, "interrupted delete finished: key material destroyed, record deleted")
			return s.deletes.FinishDelete(ctx, r.ID, "delete interrupted; finished by reconciliation", row)
		}()
		if errors.Is(err, store.ErrConflict) { // finished meanwhile
			continue
		}
		if err != nil {
			return err
		}
		rep.DeletesFinished++
		s.log.Warn().Int64("record", r.ID).Str("label", r.KeyLabel).Msg("reconciled an interrupted delete")
	}
	return nil
}

// finishMarriages writes the certificate of records a crash left with the
// intent to marry, and marks them married with their audit row.
func (s *Service) finishMarriages(ctx context.Context, scope []Token, cutoff time.Time, who store.AuditEntry, rep *ReconcileReport) error {
	recs, err := s.interrupted(ctx, store.IntentMarry, scope, cutoff, rep)
	if err != nil {
		return err
	}
	for _, r := range recs {
		leaf, err := x509.ParseCertificate(r.Cert.DER)
		if err != nil { // cannot happen: it parsed before it was stored
			return fmt.Errorf("lifecycle: reconcile: record %d: stored certificate: %w", r.ID, err)
		}
		err = func() error {
			unlock := s.locks.lock(r.ID)
			defer unlock()
			if err := s.writeCertificate(ctx, r, leaf, &who); err != nil {
				return err
			}
			row := reconcileRow(who, AuditReconcileRepair,
				"interrupted import finished: certificate "+r.Cert.Thumbprint+" written to the token, record married")
			return s.marriages.FinishMarriage(ctx, r.ID, row)
		}()
		var (
			gone *pairGoneError
			le   *Error
		)
		switch {
		case errors.As(err, &gone):
			s.reportLost(LostKey{ID: r.ID, Label: r.KeyLabel, Was: r.State, Missing: gone.missing}, rep)
			continue
		case errors.As(err, &le):
			rep.MarriagesAborted++
			s.log.Error().Int64("record", r.ID).Str("reason", le.Msg).Msg("reconcile: an interrupted import could not be finished")
			continue
		case errors.Is(err, store.ErrConflict):
			continue
		case err != nil:
			return err
		}
		rep.MarriagesFinished++
		s.log.Warn().Int64("record", r.ID).Str("thumbprint", r.Cert.Thumbprint).Msg("reconciled an interrupted import; certificate married")
	}
	return nil
}

// inScope reports whether record r's key is on a token in scope, and other
// when it is on no token of the pool at all.
func (s *Service) inScope(r *store.KeyRecord, scope []Token) (in, other bool) {
	if !s.tokens.reaches(r.TokenLabel, r.TokenSerial) {
		return false, true
	}
	tok, err := s.tokenFor(r)
	if err != nil {
		return false, true
	}
	return slices.Contains(scope, tok), false
}

// objectGroup is the objects sharing one label and CKA_ID.
type objectGroup struct {
	ref     hsm.KeyRef
	classes []hsm.ObjectClass
	claimed bool
}

func groupKey(label string, id []byte) string { return label + "\x00" + string(id) }

func groupObjects(objs []hsm.Object) map[string]*objectGroup {
	groups := map[string]*objectGroup{}
	for _, o := range objs {
		k := groupKey(o.Ref.Label, o.Ref.ID)
		g := groups[k]
		if g == nil {
			g = &objectGroup{ref: o.Ref}
			groups[k] = g
		}
		g.classes = append(g.classes, o.Class)
	}
	return groups
}

// tokenPass is one token's comparison of its listing with the live records.
type tokenPass struct {
	tok    Token
	first  bool // the first token in scope: it counts the records on no token of the pool
	live   []store.LiveKey
	groups map[string]*objectGroup // the listing
	listed time.Time               // when the listing began
	cutoff time.Time               // records changed after it are left alone
	who    store.AuditEntry        // who reconciles, for the audit rows
}

// checkLive marks lost the pending and married records whose key pair is
// not whole in the listing, restores missing certificate objects of married
// ones, and claims every group a live record owns.
func (s *Service) checkLive(ctx context.Context, p tokenPass, rep *ReconcileReport) error {
	for _, k := range p.live {
		if !s.onPassToken(p, k, rep) {
			continue
		}
		held := p.claim(k)
		if k.State == store.StateGenerating || k.Intent != store.IntentNone {
			continue // young (older ones were finished above)
		}
		if err := s.judgeLive(ctx, p, k, held, rep); err != nil {
			return err
		}
	}
	return nil
}

// onPassToken reports whether live record k's key is on p's token. A
// record whose key is on no token of the pool is counted once, by the
// first pass; one on another token of the pool is checked in its own pass.
func (s *Service) onPassToken(p tokenPass, k store.LiveKey, rep *ReconcileReport) bool {
	if !s.tokens.reaches(k.TokenLabel, k.TokenSerial) {
		if p.first && k.State != store.StateGenerating && k.Intent == store.IntentNone {
			rep.OtherToken++ // the others were counted above
		}
		return false
	}
	return s.tokens.has(p.tok, k.ID, k.TokenLabel, k.TokenSerial)
}

// heldKeys is what the listing holds of one live record: the group of its
// key pair and, for a hybrid with a token-resident alternative key pair,
// that pair's group (nil: not listed), and the halves each lacks.
type heldKeys struct {
	g, alt              *objectGroup
	missing, altMissing []hsm.ObjectClass
}

// claim marks the groups record k owns as claimed: a hybrid record's
// alternative key pair is its too, and the record is only whole with both
// pairs whole.
func (p tokenPass) claim(k store.LiveKey) heldKeys {
	var h heldKeys
	if h.g = p.groups[groupKey(k.KeyLabel, k.KeyID)]; h.g != nil {
		h.g.claimed = true
	}
	h.missing = missingHalves(h.g)
	if k.AltKeyLabel != "" {
		if h.alt = p.groups[groupKey(k.AltKeyLabel, k.AltKeyID)]; h.alt != nil {
			h.alt.claimed = true
		}
		h.altMissing = missingHalves(h.alt)
	}
	return h
}

// judgeLive restores the certificate object of a whole married record that
// lacks it, leaves a record changed since the listing for next time, and
// marks lost one whose key pairs are not whole.
func (s *Service) judgeLive(ctx context.Context, p tokenPass, k store.LiveKey, h heldKeys, rep *ReconcileReport) error {
	switch {
	case len(h.missing) == 0 && len(h.altMissing) == 0:
		if k.State == store.StateMarried && k.HasCert && !hasClass(h.g.classes, hsm.ClassCertificate) {
			return s.restoreCertificate(ctx, p.tok, k.ID, p.who, rep)
		}
		return nil
	case !k.UpdatedTime.Before(p.listed) || k.UpdatedTime.After(p.cutoff):
		rep.InProgress++ // changed since the listing: judge it next time
		return nil
	}
	return s.markLost(ctx, k, h, p.who, rep)
}

// markLost marks record k lost, with its audit row by who; what is left of
// its key pairs becomes an orphan.
func (s *Service) markLost(ctx context.Context, k store.LiveKey, h heldKeys, who store.AuditEntry, rep *ReconcileReport) error {
	for _, lg := range []*objectGroup{h.g, h.alt} {
		if lg != nil {
			lg.claimed = false
		}
	}
	lost := LostKey{ID: k.ID, Label: k.KeyLabel, Was: k.State, Missing: h.missing, AltMissing: h.altMissing}
	reason := "reconciliation: " + lost.What()
	err := s.recon.MarkLost(ctx, k.ID, reason, reconcileRow(who, AuditReconcileLost, reason))
	if errors.Is(err, store.ErrConflict) {
		rep.InProgress++
		return nil
	}
	if err != nil {
		return err
	}
	s.reportLost(lost, rep)
	return nil
}

// reportLost counts and logs a record reconciliation marked lost.
func (s *Service) reportLost(lost LostKey, rep *ReconcileReport) {
	rep.Lost = append(rep.Lost, lost)
	s.log.Error().Int64("record", lost.ID).Str("label", lost.Label).Str("was", string(lost.Was)).
		Strs("missing", classNames(lost.Missing)).Strs("alt_missing", classNames(lost.AltMissing)).
		Msg("reconcile: key pair no longer whole in the token; record marked lost")
}

// restoreCertificate writes a married record's certificate object again.
// Its audit row is written first: no record changes with it.
func (s *Service) restoreCertificate(ctx context.Context, tok Token, id int64, who store.AuditEntry, rep *ReconcileReport) error {
	unlock := s.locks.lock(id)
	defer unlock()
	rec, err := s.recon.Get(ctx, id)
	if err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(rec.Cert.DER)
	if err != nil {
		return fmt.Errorf("lifecycle: reconcile: record %d: stored certificate: %w", id, err)
	}
	row := reconcileRow(who, AuditReconcileRepair,
		"certificate "+rec.Cert.Thumbprint+" missing from the token: written again from the record")
	row.RecordID, row.KeyLabel = id, rec.KeyLabel
	if err := s.recon.AppendAudit(ctx, row); err != nil {
		return err
	}
	created, err := tok.PutCertificate(ctx, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}, leaf)
	if err != nil {
		return err
	}
	if created {
		rep.CertsRestored = append(rep.CertsRestored, id)
		s.log.Warn().Int64("record", id).Str("label", rec.KeyLabel).Msg("reconcile: certificate object was missing from the token; written again")
	}
	return nil
}

// checkOrphans explains every unclaimed group and destroys it if asked and
// csrd named it. Each candidate is looked up again first: a delete
// finishing between the listing and the record read would otherwise look
// like an orphan.
func (s *Service) checkOrphans(ctx context.Context, tok Token, groups map[string]*objectGroup, opts ReconcileOptions, rep *ReconcileReport) error {
	for _, g := range sortedGroups(groups) {
		if g.claimed || g.ref.Label == hsm.KEKLabel || keeps(opts.Keep, tok, g.ref) {
			// The sealing key shares the prefix but belongs to no record
			// (and cannot be destroyed), and a kept object (the TLS key)
			// is csrd's by configuration: neither is ever an orphan.
			continue
		}
		o, still, err := s.orphan(ctx, tok, g)
		if err != nil {
			return err
		}
		if !still {
			continue
		}
		if opts.DestroyOrphans && !o.Foreign && len(o.Ref.ID) > 0 {
			if err := s.destroyOrphan(ctx, tok, &o, opts.Audit, rep); err != nil {
				return err
			}
		}
		rep.Orphans = append(rep.Orphans, o)
		s.log.Warn().Str("label", g.ref.Label).Str("ckaid", hex.EncodeToString(g.ref.ID)).Str("reason", o.Reason).
			Bool("foreign", o.Foreign).Bool("destroyed", o.Destroyed).Msg("reconcile: orphan object in the token")
	}
	return nil
}

// orphan explains unclaimed group g with the objects it has now; still is
// false when they are gone since the listing.
func (s *Service) orphan(ctx context.Context, tok Token, g *objectGroup) (o Orphan, still bool, err error) {
	_, _, ours := ParseLabel(g.ref.Label)
	o = Orphan{Ref: g.ref, Classes: g.classes, Reason: s.orphanReason(ctx, tok, g.ref), Foreign: !ours}
	if len(g.ref.ID) == 0 {
		o.Reason += " (no CKA_ID, so it cannot be destroyed by reference; remove it with pkcs11-tool)"
		return o, true, nil
	}
	classes, err := tok.ObjectsOf(ctx, g.ref)
	if err != nil || len(classes) == 0 {
		return o, false, err
	}
	o.Classes = classes
	return o, true, nil
}

// destroyOrphan destroys orphan o's objects. No record changes with it, so
// its audit row is written first: if the row cannot be written, nothing is
// destroyed.
func (s *Service) destroyOrphan(ctx context.Context, tok Token, o *Orphan, who store.AuditEntry, rep *ReconcileReport) error {
	row := reconcileRow(who, AuditReconcileDestroy, fmt.Sprintf("orphan on token %q, CKA_ID %s, objects %s: %s",
		tok.Label(), hex.EncodeToString(o.Ref.ID), strings.Join(classNames(o.Classes), ","), o.Reason))
	row.RecordID, _, _ = ParseLabel(o.Ref.Label)
	row.KeyLabel = o.Ref.Label
	if err := s.recon.AppendAudit(ctx, row); err != nil {
		return err
	}
	if err := tok.DestroyKey(ctx, o.Ref); err != nil && !errors.Is(err, hsm.ErrNotFound) {
		return err
	}
	o.Destroyed = true
	rep.OrphansDestroyed++
	return nil
}

// keeps reports whether one of the URIs names ref on tok: its object and id
// attributes (one at least) match ref, and the token and serial it gives
// match tok. Manufacturer and model are not compared, so a URI matches at
// least what FindKeyByURI would find.
func keeps(uris []hsm.URI, tok Token, ref hsm.KeyRef) bool {
	for _, u := range uris {
		switch {
		case u.Object == "" && len(u.ID) == 0:
		case u.Object != "" && u.Object != ref.Label:
		case len(u.ID) > 0 && !bytes.Equal(u.ID, ref.ID):
		case u.Token != "" && u.Token != tok.Label():
		case u.Serial != "" && u.Serial != tok.Serial():
		default:
			return true
		}
	}
	return false
}

func (s *Service) orphanReason(ctx context.Context, tok Token, ref hsm.KeyRef) string {
	id, alt, ok := ParseLabel(ref.Label)
	if !ok {
		return "label is not one csrd gives its keys"
	}
	rec, err := s.recon.Get(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Sprintf("no record %d exists", id)
	case err != nil:
		return fmt.Sprintf("record %d could not be read: %v", id, err)
	}
	want := rec.KeyID
	if alt {
		want = rec.AltKeyID
	}
	switch {
	case alt && rec.AltKeyStorage != store.AltStorageToken:
		return fmt.Sprintf("record %d has no alternative key in the token", id)
	case !bytes.Equal(want, ref.ID):
		return fmt.Sprintf("record %d names CKA_ID %s, not this one", id, hex.EncodeToString(want))
	case !s.tokens.has(tok, rec.ID, rec.TokenLabel, rec.TokenSerial):
		return fmt.Sprintf("record %d is for token %q (serial %s)", id, rec.TokenLabel, rec.TokenSerial)
	}
	return fmt.Sprintf("record %d is %s", id, rec.State)
}

func sortedGroups(m map[string]*objectGroup) []*objectGroup {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]*objectGroup, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

func classNames(cs []hsm.ObjectClass) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.String()
	}
	return out
}

// lostHalves counts the lost records missing a private key and those
// missing a public key (a record missing both counts in each).
func (rep ReconcileReport) lostHalves() (private, public int) {
	for _, l := range rep.Lost {
		if hasClass(l.Missing, hsm.ClassPrivateKey) || hasClass(l.AltMissing, hsm.ClassPrivateKey) {
			private++
		}
		if hasClass(l.Missing, hsm.ClassPublicKey) || hasClass(l.AltMissing, hsm.ClassPublicKey) {
			public++
		}
	}
	return private, public
}

func (s *Service) logReport(rep ReconcileReport) {
	lostPriv, lostPub := rep.lostHalves()
	ev := s.log.Info()
	if rep.Interrupted+rep.DeletesFinished+rep.MarriagesFinished+rep.RetiresFinished+rep.MarriagesAborted+len(rep.Lost)+len(rep.Orphans)+len(rep.CertsRestored) > 0 {
		ev = s.log.Warn()
	}
	ev.Int("objects", rep.Objects).Int("records", rep.Records).Int("interrupted", rep.Interrupted).
		Int("keys_destroyed", rep.KeysDestroyed).Int("deletes_finished", rep.DeletesFinished).
		Int("marriages_finished", rep.MarriagesFinished).Int("marriages_aborted", rep.MarriagesAborted).Int("retires_finished", rep.RetiresFinished).
		Int("certs_restored", len(rep.CertsRestored)).Int("lost", len(rep.Lost)).
		Int("lost_private_key", lostPriv).Int("lost_public_key", lostPub).Int("orphans", len(rep.Orphans)).
		Int("orphans_destroyed", rep.OrphansDestroyed).Int("in_progress", rep.InProgress).Int("other_token", rep.OtherToken).
		Msg("reconciliation done")
}
