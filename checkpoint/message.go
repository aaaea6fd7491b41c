package checkpoint

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/csrd/csrd/store"
)

// tag names the signed structure and its version.
const tag = "csrd-audit-checkpoint-v1"

// signed is what a checkpoint's signature covers, DER-encoded:
//
//	Checkpoint ::= SEQUENCE {
//	  tag       UTF8String,   -- "csrd-audit-checkpoint-v1"
//	  keyId     OCTET STRING, -- SHA-256 of the signer's SubjectPublicKeyInfo
//	  node      UTF8String,
//	  auditId   INTEGER,      -- the last row covered (0: the empty log)
//	  auditHash OCTET STRING, -- that row's hash
//	  time      UTF8String    -- RFC 3339, UTC, as stored
//	}
//
// DER has one encoding per value, so no two checkpoints share a message.
type signed struct {
	Tag       string `asn1:"utf8"`
	KeyID     []byte
	Node      string `asn1:"utf8"`
	AuditID   int64
	AuditHash []byte
	Time      string `asn1:"utf8"`
}

// digest is the SHA-256 of cp's signed message.
func digest(cp *store.AuditCheckpoint) ([]byte, error) {
	keyID, err := hex.DecodeString(cp.KeyID)
	if err != nil || len(keyID) != sha256.Size {
		return nil, fmt.Errorf("key id %q is not a SHA-256", cp.KeyID)
	}
	hash, err := hex.DecodeString(cp.AuditHash)
	if err != nil || len(hash) != sha256.Size {
		return nil, fmt.Errorf("row hash %q is not a SHA-256", cp.AuditHash)
	}
	der, err := asn1.Marshal(signed{Tag: tag, KeyID: keyID, Node: cp.Node, AuditID: cp.AuditID, AuditHash: hash, Time: cp.Time})
	if err != nil {
		return nil, err
	}
	d := sha256.Sum256(der)
	return d[:], nil
}

// KeyID is the hex SHA-256 of pub's SubjectPublicKeyInfo: how checkpoints
// and operators name an audit key.
func KeyID(pub crypto.PublicKey) (string, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("checkpoint: public key: %w", err)
	}
	sum := sha256.Sum256(spki)
	return hex.EncodeToString(sum[:]), nil
}

// EncodePublicKey is pub as a PEM "PUBLIC KEY" block (SubjectPublicKeyInfo,
// as openssl writes it).
func EncodePublicKey(pub crypto.PublicKey) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), nil
}

// ParsePublicKeys reads every PEM "PUBLIC KEY" block in data (text between
// blocks is ignored); each must be an ECDSA P-256 key. No block is an error.
func ParsePublicKeys(data []byte) ([]*ecdsa.PublicKey, error) {
	var keys []*ecdsa.PublicKey
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "PUBLIC KEY" {
			continue
		}
		k, err := parseKey(b.Bytes)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("checkpoint: no PEM PUBLIC KEY block (export one with csrctl audit pubkey)")
	}
	return keys, nil
}

func parseKey(spki []byte) (*ecdsa.PublicKey, error) {
	pub, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: public key: %w", err)
	}
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("checkpoint: public key is %T, not ECDSA P-256", pub)
	}
	return k, nil
}
