package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// AuditCheckpoint is a signed statement, made in an HSM token, that the
// audit log's row AuditID has hash AuditHash — and so, the chain being
// what it is, that every row before it is as it was. Package checkpoint
// makes and checks the signature; the store keeps the rows.
type AuditCheckpoint struct {
	ID        int64
	Time      string // RFC 3339 UTC, as signed
	Node      string // the csrd node that signed (host name)
	KeyID     string // hex SHA-256 of PublicKey
	PublicKey []byte // the signer's SubjectPublicKeyInfo, DER: a convenience, not a trust anchor
	AuditID   int64  // the last row covered; 0 for the empty log
	AuditHash string // that row's hash (64 zeros for the empty log)
	Signature []byte

	// InLog is set by VerifyAudit: the log, in the snapshot verified, has
	// row AuditID with hash AuditHash.
	InLog bool
}

const (
	checkpointColumns   = `id, time, node, key_id, public_key, audit_id, audit_hash, signature`
	insertCheckpointSQL = `INSERT INTO audit_checkpoints (time, node, key_id, public_key, audit_id, audit_hash, signature) VALUES (?, ?, ?, ?, ?, ?, ?)
RETURNING id`
	listCheckpointsSQL = `SELECT ` + checkpointColumns + ` FROM audit_checkpoints ORDER BY id`
	auditHeadWithIDSQL = `SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1`
	hexSHA256Len       = 64
)

// AppendCheckpoint stores a signed checkpoint and sets its ID. The store
// checks the shape, not the signature.
func (s *Store) AppendCheckpoint(ctx context.Context, cp *AuditCheckpoint) error {
	const op = "append audit checkpoint"
	switch {
	case cp == nil:
		return errors.New("store: append audit checkpoint: nil")
	case cp.Time == "" || cp.Node == "" || len(cp.PublicKey) == 0 || len(cp.Signature) == 0 || cp.AuditID < 0,
		len(cp.KeyID) != hexSHA256Len, len(cp.AuditHash) != hexSHA256Len:
		return fmt.Errorf("store: append audit checkpoint: incomplete checkpoint (key %q, row %d)", cp.KeyID, cp.AuditID)
	}
	return s.withTx(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		// RETURNING, not LastInsertId: pgx has none.
		err := tx.QueryRowContext(ctx, insertCheckpointSQL, cp.Time, cp.Node, cp.KeyID, cp.PublicKey, cp.AuditID, cp.AuditHash, cp.Signature).Scan(&cp.ID)
		return dbErr(op, err)
	})
}

// AuditHead returns the id and hash of the last audit row: (0, 64 zeros)
// for an empty log.
func (s *Store) AuditHead(ctx context.Context) (int64, string, error) {
	var (
		id   int64
		hash string
	)
	switch err := s.r.QueryRowContext(ctx, auditHeadWithIDSQL).Scan(&id, &hash); {
	case errors.Is(err, sql.ErrNoRows):
		return 0, genesisHash, nil
	case err != nil:
		return 0, "", dbErr("read audit head", err)
	}
	return id, hash, nil
}

// listCheckpoints reads every checkpoint, oldest first.
func listCheckpoints(ctx context.Context, q querier) ([]AuditCheckpoint, error) {
	const op = "list audit checkpoints"
	rows, err := q.QueryContext(ctx, listCheckpointsSQL)
	if err != nil {
		return nil, dbErr(op, err)
	}
	defer rows.Close()
	var out []AuditCheckpoint
	for rows.Next() {
		var cp AuditCheckpoint
		if err := rows.Scan(&cp.ID, &cp.Time, &cp.Node, &cp.KeyID, &cp.PublicKey, &cp.AuditID, &cp.AuditHash, &cp.Signature); err != nil {
			return nil, dbErr(op, err)
		}
		out = append(out, cp)
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr(op, err)
	}
	return out, nil
}

// checkpointIndex marks, while VerifyAudit walks the chain, the checkpoints
// whose row is in the log with the hash they signed.
type checkpointIndex map[int64][]*AuditCheckpoint

func newCheckpointIndex(cps []AuditCheckpoint) checkpointIndex {
	ix := checkpointIndex{}
	for i := range cps {
		cp := &cps[i]
		if cp.AuditID == 0 {
			cp.InLog = cp.AuditHash == genesisHash
			continue
		}
		ix[cp.AuditID] = append(ix[cp.AuditID], cp)
	}
	return ix
}

func (ix checkpointIndex) row(id int64, hash string) {
	for _, cp := range ix[id] {
		cp.InLog = cp.AuditHash == hash
	}
}
