package enroll

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"strings"
	"time"

	"github.com/csrd/csrd/acmeca"
	"github.com/csrd/csrd/csr"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/store"
)

// Request is an Enrollment/CSR call, independent of the wire format.
type Request struct {
	// CSR is one csrd generated (PEM, or base64 DER) for a pending key.
	CSR string
	// CA names an entry of cas: ("" when exactly one is configured).
	CA string
	// Template and SANs, when sent, must be the record's: the CSR is signed
	// and fixed, nothing can be added at enrollment.
	Template string
	SANs     map[string][]string
	// Scope is the part of the records the caller may see (nil: all). A
	// key outside it is treated as absent, as a pending read treats it, so
	// an enrollment tells nothing of records the caller cannot read.
	Scope *store.Scope
	// Authorize, when set, decides whether the caller may enroll this key
	// (its enrollment pattern and template against the caller's grants).
	Authorize func(rec *store.KeyRecord) error
}

// Keyfactor's RequestDisposition values.
const (
	Issued  = "ISSUED"
	Pending = "PENDING"
)

// Result is the outcome of an enrollment.
type Result struct {
	Disposition string
	Message     string
	RecordID    int64 // KeyfactorID
	OrderID     int64 // KeyfactorRequestId
	// Chain is the issued certificate, leaf first (ISSUED only).
	Chain  []*x509.Certificate
	KeyURI string
}

// Enroll orders a certificate for the pending key whose CSR this is, from
// the CA named, and marries it to the key. It answers ISSUED when that is
// done within the service's wait, else PENDING with the order id: the order
// goes on in the background (across restarts), and calling again with the
// same CSR returns the outcome. A CA that is down or refuses is an
// acmeca error; the key stays pending and a retry orders again.
func (s *Service) Enroll(ctx context.Context, req Request) (*Result, error) {
	start := s.now()
	der, err := parseCSR(req.CSR)
	if err != nil {
		return nil, err
	}
	c, err := s.ca(req.CA)
	if err != nil {
		return nil, err
	}
	rec, err := s.keyFor(ctx, der, req.Scope)
	if err != nil {
		return nil, err
	}
	if req.Authorize != nil {
		if err := req.Authorize(rec); err != nil {
			return nil, err
		}
	}
	if err := checkRequest(req, rec); err != nil {
		return nil, err
	}
	if rec.State != store.StateMarried {
		if err := s.keys.Locate(rec); err != nil {
			return nil, err // another node's token: the API forwards it there
		}
	}
	res, err := s.enrollKey(ctx, c, rec, der)
	s.metrics.enrolled(c.cfg.Name, res, err, s.now().Sub(start))
	return res, err
}

func (s *Service) enrollKey(ctx context.Context, c *caEntry, rec *store.KeyRecord, der []byte) (*Result, error) {
	switch {
	case rec.State == store.StateMarried:
		return s.alreadyIssued(ctx, rec)
	case rec.Intent == store.IntentDelete:
		return nil, newErr(ErrConflict, "the key of record %d is being deleted", rec.ID)
	}
	parsed, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, newErr(ErrInvalid, "CSR: %v", err)
	}
	if _, err := acmeca.Identifiers(parsed); err != nil {
		return nil, newErr(ErrInvalid, "%s", strings.TrimPrefix(err.Error(), "acmeca: "))
	}
	o, created, err := s.records.OpenOrder(ctx, rec.ID, c.cfg.Name, 0)
	if err != nil {
		return nil, err
	}
	if !strings.EqualFold(o.CA, c.cfg.Name) {
		return nil, newErr(ErrConflict, "the key of record %d is being enrolled with CA %q (request %d); wait for it", rec.ID, o.CA, o.ID)
	}
	if mine, err := s.lease(ctx, rec, o, created); err != nil || !mine {
		return pending(o), err
	}
	return s.await(ctx, o)
}

// lease takes the record's lease for the order this request drives: a
// new order is this node's; an open one may be driven by another live node
// sharing the token, which then marries the certificate (the answer is
// PENDING, and the same request later gets ISSUED).
func (s *Service) lease(ctx context.Context, rec *store.KeyRecord, o *store.Order, created bool) (bool, error) {
	switch {
	case created:
		return true, s.keys.TakeWork(ctx, rec)
	case s.running(o.ID):
		return true, nil
	}
	return s.keys.ClaimWork(ctx, rec)
}

// await waits for an order's job, at most the service's wait.
func (s *Service) await(ctx context.Context, o *store.Order) (*Result, error) {
	j := s.start(o)
	t := time.NewTimer(s.wait)
	defer t.Stop()
	select {
	case <-j.done:
		if j.err != nil {
			return nil, j.err
		}
		rec, err := s.records.Get(ctx, o.RecordID)
		if err != nil {
			return nil, err
		}
		return issued(rec, o.ID, "issued by "+o.CA)
	case <-t.C:
		return pending(o), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pending answers an order that goes on in the background.
func pending(o *store.Order) *Result {
	return &Result{Disposition: Pending, RecordID: o.RecordID, OrderID: o.ID,
		Message: "the CA has not issued the certificate yet; csrd goes on with the order and marries the certificate to the key when it comes; send the same request again for the result"}
}

// alreadyIssued answers a repeated enrollment of a key csrd enrolled.
func (s *Service) alreadyIssued(ctx context.Context, rec *store.KeyRecord) (*Result, error) {
	o, err := s.records.LatestOrder(ctx, rec.ID)
	if errors.Is(err, store.ErrNotFound) || err == nil && o.State != store.OrderMarried {
		return nil, newErr(ErrConflict, "the key of record %d already has a certificate (thumbprint %s), imported rather than enrolled here", rec.ID, rec.Cert.Thumbprint)
	}
	if err != nil {
		return nil, err
	}
	return issued(rec, o.ID, "issued by "+o.CA+" (enrolled before)")
}

func issued(rec *store.KeyRecord, orderID int64, msg string) (*Result, error) {
	leaf, err := x509.ParseCertificate(rec.Cert.DER)
	if err != nil {
		return nil, err
	}
	chain := []*x509.Certificate{leaf}
	rest := []byte(rec.Cert.ChainPEM)
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		chain = append(chain, c)
	}
	return &Result{Disposition: Issued, Message: msg, RecordID: rec.ID, OrderID: orderID, Chain: chain, KeyURI: lifecycle.KeyURI(rec)}, nil
}

// keyFor finds the live record in scope whose key signed this CSR: by
// public key, never by subject, and the CSR must be the one csrd made for it.
func (s *Service) keyFor(ctx context.Context, der []byte, scope *store.Scope) (*store.KeyRecord, error) {
	parsed, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, newErr(ErrInvalid, "CSR is not a PKCS#10 request: %v", err)
	}
	if err := parsed.CheckSignature(); err != nil {
		return nil, newErr(ErrInvalid, "CSR signature does not verify: %v", err)
	}
	spki, err := csr.SPKISHA256(parsed.PublicKey)
	if err != nil {
		return nil, newErr(ErrInvalid, "CSR public key: %v", err)
	}
	recs, err := s.records.FindBySPKI(ctx, spki)
	if err != nil {
		return nil, err
	}
	var dead *store.KeyRecord
	for _, r := range recs {
		if !scope.Has(r) {
			continue
		}
		if r.State != store.StatePending && r.State != store.StateMarried {
			dead = r
			continue
		}
		if mine, _ := parseCSR(r.CSRPEM); !bytes.Equal(mine, der) {
			return nil, newErr(ErrInvalid, "the CSR has the public key of record %d but is not the CSR csrd generated for it; send that one (GET CSRGeneration/Pending/%d)", r.ID, r.ID)
		}
		return r, nil
	}
	if dead != nil {
		return nil, newErr(ErrInvalid, "the CSR's key (record %d) is %s: csrd holds no key to enroll", dead.ID, dead.State)
	}
	return nil, newErr(ErrInvalid, "csrd enrolls only keys it holds: no key generated by this csrd has the CSR's public key (SPKI SHA-256 %s)", hex.EncodeToString(spki))
}

// checkRequest refuses a Template or SANs that differ from the record's:
// the CSR is signed, so nothing can change at enrollment.
func checkRequest(req Request, rec *store.KeyRecord) error {
	if req.Template != "" && !strings.EqualFold(req.Template, rec.Template) {
		return newErr(ErrInvalid, "Template %q is not the template of the CSR's key (record %d: %q); send it without Template or with that one", req.Template, rec.ID, rec.Template)
	}
	if len(req.SANs) == 0 {
		return nil
	}
	sans, err := csr.ParseSANs(req.SANs)
	if err != nil {
		return err
	}
	got, want := strings.Join(sans.Strings(), ","), strings.Join(rec.SANs, ",")
	if got != want {
		return newErr(ErrInvalid, "SANs (%s) differ from the CSR's (%s): the CSR is signed and cannot change; send it without SANs", got, want)
	}
	return nil
}

// parseCSR reads a CSR sent as PEM or as base64 DER.
func parseCSR(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, newErr(ErrInvalid, "CSR is required")
	}
	if strings.Contains(s, "-----BEGIN") {
		b, _ := pem.Decode([]byte(s))
		if b == nil || !strings.Contains(b.Type, "CERTIFICATE REQUEST") {
			return nil, newErr(ErrInvalid, "CSR: the PEM text is not a CERTIFICATE REQUEST")
		}
		return b.Bytes, nil
	}
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		return nil, newErr(ErrInvalid, "CSR is neither PEM nor base64")
	}
	return der, nil
}
