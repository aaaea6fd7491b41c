package lifecycle

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/csrd/csrd/csr"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

// ParseLabel says which record a token label belongs to: Label(id) is the
// primary key, Label(id)+store.AltLabelSuffix a token-resident alternative
// key. Anything else — including hsm.KEKLabel, which shares the prefix but
// belongs to no record — is not a record's label (ok false); an orphan
// check must not treat those as orphans of a record.
func ParseLabel(label string) (id int64, alt, ok bool) {
	rest, found := strings.CutPrefix(label, LabelPrefix)
	if !found {
		return 0, false, false
	}
	rest, alt = strings.CutSuffix(rest, store.AltLabelSuffix)
	if rest == "" || rest[0] == '0' || strings.TrimLeft(rest, "0123456789") != "" {
		return 0, false, false
	}
	id, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || id <= 0 {
		return 0, false, false
	}
	return id, alt, true
}

// altPlan is the alternative key a hybrid request gets: which ML-DSA set,
// and where its private half will live — decided before anything is
// recorded, so the record can name it.
type altPlan struct {
	set     hsm.MLDSA
	storage hsm.AltStorage
}

var mldsaSets = map[policy.Algorithm]hsm.MLDSA{
	policy.MLDSA44: hsm.MLDSA44, policy.MLDSA65: hsm.MLDSA65, policy.MLDSA87: hsm.MLDSA87,
}

// planAlt returns nil for a request without an alternative key. A token
// without ML-DSA means a sealed seed, which the policy may forbid.
func (s *Service) planAlt(tok Token, dec *policy.Decision) (*altPlan, error) {
	if dec.AltKey == nil {
		return nil, nil
	}
	set, ok := mldsaSets[dec.AltKey.Algorithm]
	if !ok {
		return nil, &NotSupportedError{What: "AlternativeKeyType " + string(dec.AltKey.Algorithm)}
	}
	p := &altPlan{set: set, storage: tok.MLDSAStorage()}
	if p.storage == hsm.AltStorageNone {
		return nil, &NotSupportedError{What: fmt.Sprintf("AlternativeKeyType %s on HSM token %q", dec.AltKey.Algorithm, tok.Label()),
			Why: "the token holds no ML-DSA keys (PKCS#11 3.2) and cannot seal one's seed (no CKM_AES_GCM); nothing was created"}
	}
	if p.storage == hsm.AltStorageSealed && !dec.AllowSealedAlt {
		by := "the policy"
		if dec.EnrollmentPatternID != 0 {
			by = fmt.Sprintf("enrollment pattern %d (%q)", dec.EnrollmentPatternID, dec.EnrollmentPatternName)
		}
		return nil, policy.Refuse(policy.RuleSealedAltKey, "AlternativeKeyType", fmt.Sprintf(
			"AlternativeKeyType %s would need a sealed alternative key, which %s does not allow (AllowSealedAlternativeKeys): HSM token %q cannot hold ML-DSA keys (PKCS#11 3.2)",
			dec.AltKey.Algorithm, by, tok.Label()))
	}
	return p, nil
}

// recordAlt fills in what the record must know about the alternative key
// before it exists: its algorithm, storage and, in the token, its CKA_ID
// (the label follows from the record id).
func (s *Service) recordAlt(ctx context.Context, tok Token, rec *store.KeyRecord, p *altPlan) error {
	rec.AltKeyType = p.set.String()
	switch p.storage {
	case hsm.AltStorageToken:
		id, err := tok.NewKeyID(ctx)
		if err != nil {
			return err
		}
		rec.AltKeyStorage, rec.AltKeyID = store.AltStorageToken, id
	case hsm.AltStorageSealed:
		rec.AltKeyStorage = store.AltStorageSealed
	default:
		return fmt.Errorf("lifecycle: alternative key storage %q", p.storage)
	}
	return nil
}

// generateAlt creates the alternative key the record names.
func (s *Service) generateAlt(ctx context.Context, tok Token, rec *store.KeyRecord, p *altPlan) (AltKey, error) {
	if p.storage == hsm.AltStorageToken {
		return tok.GenerateMLDSA(ctx, p.set, hsm.KeyRef{ID: rec.AltKeyID, Label: rec.AltKeyLabel})
	}
	return tok.NewSealedMLDSA(ctx, p.set, sealBinding(rec))
}

// sealBinding is what a sealed seed is bound to: the record id and its key
// label (the algorithm is added by hsm).
func sealBinding(rec *store.KeyRecord) hsm.SealBinding {
	return hsm.SealBinding{RecordID: rec.ID, Label: rec.KeyLabel}
}

// completeHybrid makes the record pending with both keys' SPKI hashes and,
// for a sealed key, the sealed seed (and the request's audit row, if any).
func (s *Service) completeHybrid(ctx context.Context, id int64, pem string, spki []byte, alt AltKey, audit *store.AuditEntry) error {
	altSPKI, err := csr.SPKISHA256(alt.Public())
	if err != nil {
		return err
	}
	c := store.AltCompletion{SPKISHA256: altSPKI}
	if alt.Storage() == hsm.AltStorageSealed {
		c.SealedSeed = alt.SealedSeed()
	}
	return s.gen.CompleteHybridKey(ctx, id, pem, spki, c, audit)
}
