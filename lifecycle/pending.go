package lifecycle

import (
	"context"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/csrd/csrd/store"
)

// PendingReads is what the pending list reads.
type PendingReads interface {
	Get(ctx context.Context, id int64) (*store.KeyRecord, error)
	ListPending(ctx context.Context, q store.PendingQuery) ([]*store.KeyRecord, error)
	CountPending(ctx context.Context, q store.PendingQuery) (int, error)
}

// PendingCSR is one entry of the pending list: a key in the token waiting
// for its certificate.
type PendingCSR struct {
	ID          int64
	CSRPEM      string
	RequestTime time.Time
	// Summary describes the request as Keyfactor's pending list does: the
	// subject DN, each SAN, the key and the signature hash.
	Summary []string
}

// ListPending returns one page of pending CSRs and the number of pending
// CSRs the query matches in all.
func (s *Service) ListPending(ctx context.Context, q store.PendingQuery) ([]PendingCSR, int, error) {
	recs, err := s.pending.ListPending(ctx, q)
	if err != nil {
		return nil, 0, err
	}
	total, err := s.pending.CountPending(ctx, q)
	if err != nil {
		return nil, 0, err
	}
	out := make([]PendingCSR, 0, len(recs))
	for _, r := range recs {
		out = append(out, PendingCSR{ID: r.ID, CSRPEM: r.CSRPEM, RequestTime: r.RequestTime, Summary: Summary(r)})
	}
	return out, total, nil
}

// GetPending returns the CSR (PEM) of a pending record; a record that is
// not (or no longer) pending is ErrNotFound with the reason, and one outside
// scope (nil: no limit) is ErrNotFound exactly as if it did not exist.
func (s *Service) GetPending(ctx context.Context, id int64, scope *store.Scope) (string, error) {
	rec, err := s.pendingRecord(ctx, id, scope)
	if err != nil {
		return "", err
	}
	return rec.CSRPEM, nil
}

func (s *Service) pendingRecord(ctx context.Context, id int64, scope *store.Scope) (*store.KeyRecord, error) {
	rec, err := scopedRecord(ctx, s.pending, id, scope)
	if err != nil {
		return nil, err
	}
	if rec.State != store.StatePending || rec.Intent != store.IntentNone {
		return nil, notPending(rec)
	}
	return rec, nil
}

// recordGetter reads one record; every use case's records can.
type recordGetter interface {
	Get(ctx context.Context, id int64) (*store.KeyRecord, error)
}

// scopedRecord returns record id, or ErrNotFound when there is none or it
// is outside scope: the caller cannot tell the two apart, nor learn the
// state of a record it may not see.
func scopedRecord(ctx context.Context, recs recordGetter, id int64, scope *store.Scope) (*store.KeyRecord, error) {
	rec, err := recs.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) || err == nil && !scope.Has(rec) {
		return nil, newErr(ErrNotFound, "no pending CSR with Id %d", id)
	}
	return rec, err
}

// Summary lists what a pending request is: "Subject: <DN>", one "SAN: ..."
// per name, "Key: <algorithm and size>" and "Hash: <signature hash>".
func Summary(r *store.KeyRecord) []string {
	out := []string{"Subject: " + r.Subject}
	for _, san := range r.SANs {
		out = append(out, "SAN: "+san)
	}
	key := r.KeyType
	switch {
	case r.Curve != "" && r.KeySize > 0:
		key = fmt.Sprintf("%s %s (%d bits)", r.KeyType, r.Curve, r.KeySize)
	case r.Curve != "":
		key = r.KeyType + " " + r.Curve
	case r.KeySize > 0:
		key = fmt.Sprintf("%s %d", r.KeyType, r.KeySize)
	}
	out = append(out, "Key: "+key)
	if h := signatureHash(r.CSRPEM); h != "" {
		out = append(out, "Hash: "+h)
	}
	return out
}

// sigHashes names the hash of each CSR signature algorithm csrd produces.
var sigHashes = map[string]string{
	"1.2.840.113549.1.1.11": "SHA256", // sha256WithRSAEncryption
	"1.2.840.113549.1.1.12": "SHA384",
	"1.2.840.113549.1.1.13": "SHA512",
	"1.2.840.10045.4.3.2":   "SHA256", // ecdsa-with-SHA256
	"1.2.840.10045.4.3.3":   "SHA384",
	"1.2.840.10045.4.3.4":   "SHA512",
	"1.3.101.112":           "SHA512 (Ed25519)",
	"1.3.101.113":           "SHAKE256 (Ed448)",
}

// signatureHash reads the signature algorithm from the CSR's outer
// structure. It does not use x509.ParseCertificateRequest, which rejects
// public key types Go does not know (Ed448).
func signatureHash(csrPEM string) string {
	block, _ := pem.Decode([]byte(csrPEM))
	if block == nil {
		return ""
	}
	var outer struct {
		Info asn1.RawValue
		Alg  pkix.AlgorithmIdentifier
		Sig  asn1.BitString
	}
	if _, err := asn1.Unmarshal(block.Bytes, &outer); err != nil {
		return ""
	}
	oid := outer.Alg.Algorithm.String()
	if h, ok := sigHashes[oid]; ok {
		return h
	}
	return oid
}
