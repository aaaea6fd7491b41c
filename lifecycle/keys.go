package lifecycle

import (
	"context"
	"errors"
	"strings"

	"github.com/csrd/csrd/store"
)

// KeyReads is what the key records and Recover read.
type KeyReads interface {
	Get(ctx context.Context, id int64) (*store.KeyRecord, error)
	ListKeys(ctx context.Context, q store.KeyQuery) ([]*store.KeyRecord, error)
	FindByThumbprint(ctx context.Context, thumbprint string) ([]*store.KeyRecord, error)
	FindBySerial(ctx context.Context, serial string) ([]*store.KeyRecord, error)
}

// KeyInfo is a record as operators see it: everything stored plus the
// key's PKCS#11 URI.
type KeyInfo struct {
	Record *store.KeyRecord
	URI    string
}

// ListKeys returns one page of records, in id order.
func (s *Service) ListKeys(ctx context.Context, q store.KeyQuery) ([]KeyInfo, error) {
	recs, err := s.keys.ListKeys(ctx, q)
	if err != nil {
		return nil, err
	}
	out := make([]KeyInfo, len(recs))
	for i, r := range recs {
		out[i] = KeyInfo{Record: r, URI: KeyURI(r)}
	}
	return out, nil
}

// GetKey returns one record.
func (s *Service) GetKey(ctx context.Context, id int64) (KeyInfo, error) {
	rec, err := s.keys.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return KeyInfo{}, newErr(ErrNotFound, "no key record with Id %d", id)
	}
	if err != nil {
		return KeyInfo{}, err
	}
	return KeyInfo{Record: rec, URI: KeyURI(rec)}, nil
}

// RecoverRequest names a certificate whose private key a client wants, the
// ways Keyfactor's Certificates/Recover does.
type RecoverRequest struct {
	CertID       int64 // csrd's record Id, which Import returns as the certificate id
	Thumbprint   string
	SerialNumber string
	IssuerDN     string
	// Scope limits the records searched (nil: no limit); a certificate
	// married to a record outside it is answered as if unknown.
	Scope *store.Scope
}

// Recover always fails: either the certificate is not one csrd married to
// a key (ErrNotFound), or it is and its key cannot leave the HSM
// (*NotExtractableError, naming the key's PKCS#11 URI).
func (s *Service) Recover(ctx context.Context, req RecoverRequest) error {
	var (
		recs []*store.KeyRecord
		err  error
	)
	switch {
	case req.CertID > 0:
		var rec *store.KeyRecord
		rec, err = s.keys.Get(ctx, req.CertID)
		if errors.Is(err, store.ErrNotFound) {
			err = nil
		} else if err == nil {
			recs = append(recs, rec)
		}
	case req.Thumbprint != "":
		recs, err = s.keys.FindByThumbprint(ctx, strings.ReplaceAll(req.Thumbprint, ":", ""))
	case req.SerialNumber != "":
		recs, err = s.keys.FindBySerial(ctx, strings.ReplaceAll(req.SerialNumber, ":", ""))
	default:
		return newErr(ErrNotFound, "name the certificate by CertID, Thumbprint or SerialNumber and IssuerDN")
	}
	if err != nil {
		return err
	}
	for _, r := range recs {
		if r.State != store.StateMarried || !req.Scope.Has(r) {
			continue
		}
		if req.IssuerDN != "" && req.CertID == 0 && req.Thumbprint == "" && !sameDN(r.Cert.Issuer, req.IssuerDN) {
			continue
		}
		return &NotExtractableError{ID: r.ID, URI: KeyURI(r)}
	}
	return newErr(ErrNotFound, "no certificate married to a csrd key matches; csrd holds no other private keys")
}

// sameDN compares DNs loosely (case, spaces after commas): enough to pick
// among certificates that already share a serial number.
func sameDN(a, b string) bool {
	norm := func(s string) string {
		return strings.ToLower(strings.ReplaceAll(strings.ReplaceAll(s, ", ", ","), " ,", ","))
	}
	return norm(a) == norm(b)
}
