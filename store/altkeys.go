package store

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
)

// AltStorage says where the private half of a record's alternative
// (post-quantum) key lives.
type AltStorage string

const (
	// AltStorageToken: a key pair in the token, named by AltKeyLabel and
	// AltKeyID.
	AltStorageToken AltStorage = "token"
	// AltStorageSealed: only a seed, sealed by the token, in AltSealedSeed.
	AltStorageSealed AltStorage = "sealed"
)

// AltLabelSuffix is appended to a record's key label to name its
// token-resident alternative key ("csrd-12" → "csrd-12-alt"), so both halves
// of a hybrid pair carry the record's label and each has its own CKA_ID.
const AltLabelSuffix = "-alt"

// altColumns extend keyColumns (migration 0004).
const altColumns = `alt_key_type, alt_key_storage, alt_key_label, alt_key_id, alt_sealed_seed, alt_spki_sha256`

const (
	// beginAltSQL runs in BeginKey's transaction, right after the insert.
	beginAltSQL = `UPDATE keys SET alt_key_type = ?, alt_key_storage = ?, alt_key_label = ?, alt_key_id = ?
WHERE id = ?`
	// completeAltSQL runs in CompleteHybridKey's transaction after the
	// state moved to pending; the storage condition makes a sealed record
	// without a seal (or a token record with one) match no row.
	completeAltSQL = `UPDATE keys SET alt_spki_sha256 = ?, alt_sealed_seed = ?
WHERE id = ? AND alt_key_storage IS NOT NULL AND ((alt_key_storage = 'sealed') = ?)`
	clearSealedSeedSQL = `UPDATE keys SET alt_sealed_seed = NULL WHERE id = ? AND alt_key_storage = 'sealed'`
)

// checkAlt validates the alternative-key fields BeginKey records.
func checkAlt(rec *KeyRecord) error {
	switch rec.AltKeyStorage {
	case "":
		if rec.AltKeyType != "" || len(rec.AltKeyID) != 0 {
			return errors.New("store: begin key: alternative key type or id without a storage")
		}
	case AltStorageToken:
		if rec.AltKeyType == "" || len(rec.AltKeyID) == 0 {
			return errors.New("store: begin key: a token-resident alternative key needs a type and a key id")
		}
	case AltStorageSealed:
		if rec.AltKeyType == "" || len(rec.AltKeyID) != 0 {
			return errors.New("store: begin key: a sealed alternative key needs a type and no key id")
		}
	default:
		return fmt.Errorf("store: begin key: unknown alternative key storage %q", rec.AltKeyStorage)
	}
	return nil
}

// beginAlt records the alternative key in BeginKey's transaction; the label
// of a token-resident one derives from the record's key label.
func beginAlt(ctx context.Context, tx *sql.Tx, id int64, label string, rec *KeyRecord) error {
	if rec.AltKeyStorage == "" {
		return nil
	}
	var altLabel string
	if rec.AltKeyStorage == AltStorageToken {
		altLabel = label + AltLabelSuffix
	}
	_, err := tx.ExecContext(ctx, beginAltSQL, rec.AltKeyType, string(rec.AltKeyStorage), nullString(altLabel), nullHex(rec.AltKeyID), id)
	if isUnique(err) {
		return fmt.Errorf("%w: alternative key id %x or label %q already in use", ErrConflict, rec.AltKeyID, altLabel)
	}
	if err != nil {
		return dbErr("begin key", err)
	}
	rec.AltKeyLabel = altLabel
	return nil
}

// AltCompletion is what a hybrid record learns once both keys exist.
type AltCompletion struct {
	SPKISHA256 []byte // SHA-256 of the alternative SubjectPublicKeyInfo
	SealedSeed []byte // the sealed seed; required for AltStorageSealed, nil for token
}

// CompleteHybridKey is CompleteKey (audit row included) for a record with an alternative key: in
// the same transaction it stores the alternative key's SPKI hash and, for a
// sealed key, its sealed seed. A record without an alternative key, or one
// whose storage does not match alt, is refused and nothing changes.
func (s *Store) CompleteHybridKey(ctx context.Context, id int64, csrPEM string, spkiSHA256 []byte, alt AltCompletion, audit *AuditEntry) error {
	if csrPEM == "" || len(spkiSHA256) != 32 || len(alt.SPKISHA256) != 32 {
		return fmt.Errorf("store: complete key %d: a CSR and 32-byte SPKI SHA-256s of both keys are required", id)
	}
	if audit != nil {
		if err := checkAudit(audit); err != nil {
			return err
		}
	}
	var seed any
	if len(alt.SealedSeed) > 0 {
		seed = alt.SealedSeed
	}
	return s.withTx(ctx, "complete key", func(ctx context.Context, tx *sql.Tx) error {
		label, err := s.completeTx(ctx, tx, id, csrPEM, spkiSHA256)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, completeAltSQL, hex.EncodeToString(alt.SPKISHA256), seed, id, seed != nil)
		if err != nil {
			return dbErr("complete key", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("store: complete key %d: no alternative key recorded with storage matching the completion (sealed seed given: %v)", id, seed != nil)
		}
		return s.recordAuditAs(ctx, tx, id, label, audit)
	})
}

// ClearSealedSeed removes a record's sealed alternative seed — for a
// sealed key that is destroying it. A record without one is left as is.
func (s *Store) ClearSealedSeed(ctx context.Context, id int64) error {
	return s.withTx(ctx, "clear sealed seed", func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, clearSealedSeedSQL, id)
		return dbErr("clear sealed seed", err)
	})
}

// altScan holds the alternative-key columns while a row is scanned.
type altScan struct {
	typ, storage, label, keyID, spki sql.NullString
	seed                             []byte
}

func (a *altScan) dests() []any {
	return []any{&a.typ, &a.storage, &a.label, &a.keyID, &a.seed, &a.spki}
}

func (a *altScan) fill(rec *KeyRecord) error {
	rec.AltKeyType, rec.AltKeyStorage, rec.AltKeyLabel = a.typ.String, AltStorage(a.storage.String), a.label.String
	var err error
	if rec.AltKeyID, err = decodeHex(a.keyID); err != nil {
		return fmt.Errorf("key %d alt_key_id: %w", rec.ID, err)
	}
	if rec.AltSPKISHA256, err = decodeHex(a.spki); err != nil {
		return fmt.Errorf("key %d alt_spki_sha256: %w", rec.ID, err)
	}
	if len(a.seed) > 0 {
		rec.AltSealedSeed = a.seed
	}
	return nil
}
