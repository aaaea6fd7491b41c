package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/csrd/csrd/lifecycle"
)

// Certificates is what the certificate endpoints need from the use cases.
type Certificates interface {
	Import(ctx context.Context, req lifecycle.ImportRequest) (*lifecycle.ImportResult, error)
	Recover(ctx context.Context, req lifecycle.RecoverRequest) error
}

func (s *Server) certificateRoutes() {
	s.route(http.MethodPost, "/Certificates/Import", s.importCertificate, s.forwardable)
	s.route(http.MethodPost, "/Certificates/Recover", s.recoverCertificate)
}

// ImportRequest is Keyfactor's Certificates/Import body. Only Certificate
// matters to csrd; store and metadata fields are accepted and ignored
// because csrd manages no certificate stores.
type ImportRequest struct {
	// Certificate is PEM (leaf first, optionally followed by its issuers)
	// or base64 DER.
	Certificate string `json:"Certificate"`
	// Chain optionally carries the issuer certificates (PEM or base64 DER).
	Chain string `json:"Chain"`
	// Password is for Keyfactor's PFX imports; csrd refuses them.
	Password string `json:"Password"`
}

// Validate checks the shape of the request.
func (r *ImportRequest) Validate() error {
	switch {
	case r.Certificate == "":
		return badField("Certificate is required (PEM or base64 DER of the issued certificate)")
	case r.Password != "":
		return badField("Password is for PFX imports; csrd imports only the issued certificate (its key is already in the HSM), so send it without a password")
	}
	return nil
}

// ImportResponse names the key the certificate was married to.
// ImportStatus and JobStatus are the two members of Keyfactor's
// CertificateImportResponseModel its v25 SDK keeps besides Thumbprint.
// Keyfactor documents ImportStatus as telling a newly created certificate
// from one that already existed, and JobStatus as the state of the
// certificate store jobs an import schedules, without publishing their
// numbers; csrd's are its own (docs/api.md): ImportStatus 1 new, 2 already
// there; JobStatus 0, no store job (csrd manages no certificate stores).
type ImportResponse struct {
	ImportStatus   int       `json:"ImportStatus"`
	JobStatus      int       `json:"JobStatus"`
	ID             int64     `json:"Id"`
	CertificateID  int64     `json:"CertificateId"` // the same record Id; Recover takes it as CertID
	Thumbprint     string    `json:"Thumbprint"`
	SerialNumber   string    `json:"SerialNumber"`
	IssuerDN       string    `json:"IssuerDN"`
	NotAfter       time.Time `json:"NotAfter"`
	KeyURI         string    `json:"KeyUri"`
	AlreadyMarried bool      `json:"AlreadyMarried"`
}

func (s *Server) importCertificate(c echo.Context) error {
	var req ImportRequest
	if err := s.bindJSON(c, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	// The row commits with the intent to marry (no certificate is bound
	// without it); an import that changes nothing is audited by observe.
	audit := s.successAudit(c, http.StatusOK)
	res, err := s.certs.Import(c.Request().Context(), lifecycle.ImportRequest{
		Certificate: req.Certificate, Chain: req.Chain, Scope: recordScope(c), Audit: audit,
	})
	auditWritten(c, audit)
	if err != nil {
		return err
	}
	auditRecord(c, res.ID, "")
	requestLogger(c, s.log).Info().Int64("record", res.ID).Str("thumbprint", res.Thumbprint).
		Bool("already_married", res.AlreadyMarried).Msg("certificate imported")
	status := ImportStatusNew
	if res.AlreadyMarried {
		status = ImportStatusExisting
	}
	return c.JSON(http.StatusOK, ImportResponse{
		ImportStatus: status, JobStatus: JobStatusNone,
		ID: res.ID, CertificateID: res.ID, Thumbprint: res.Thumbprint, SerialNumber: res.Serial,
		IssuerDN: res.Issuer, NotAfter: res.NotAfter.UTC(), KeyURI: res.KeyURI, AlreadyMarried: res.AlreadyMarried,
	})
}

// ImportStatus and JobStatus values (see ImportResponse).
const (
	ImportStatusNew      = 1 // the certificate was married to its key now
	ImportStatusExisting = 2 // it was married before; nothing changed
	JobStatusNone        = 0 // no certificate store job was scheduled
)

// RecoverRequest is Keyfactor's Certificates/Recover body. The Password (for
// the PFX that would be built) is accepted and never used or logged.
type RecoverRequest struct {
	Password     string `json:"Password"`
	CertID       *int64 `json:"CertID"`
	SerialNumber string `json:"SerialNumber"`
	IssuerDN     string `json:"IssuerDN"`
	Thumbprint   string `json:"Thumbprint"`
	IncludeChain bool   `json:"IncludeChain"`
}

// Validate checks the certificate is named one of Keyfactor's ways.
func (r *RecoverRequest) Validate() error {
	switch {
	case r.CertID != nil && *r.CertID < 1:
		return badField("CertID %d is not a certificate id", *r.CertID)
	case r.CertID == nil && r.Thumbprint == "" && r.SerialNumber == "":
		return badField("name the certificate by CertID, Thumbprint, or SerialNumber and IssuerDN")
	case r.CertID == nil && r.Thumbprint == "" && r.IssuerDN == "":
		return badField("SerialNumber needs IssuerDN")
	}
	return nil
}

// recoverCertificate always refuses: a csrd key cannot leave the HSM, and
// the answer says where to use it instead.
func (s *Server) recoverCertificate(c echo.Context) error {
	var req RecoverRequest
	if err := s.bindJSON(c, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	var certID int64
	if req.CertID != nil {
		certID = *req.CertID
	}
	err := s.certs.Recover(c.Request().Context(), lifecycle.RecoverRequest{
		CertID: certID, Thumbprint: req.Thumbprint, SerialNumber: req.SerialNumber, IssuerDN: req.IssuerDN,
		Scope: recordScope(c),
	})
	if err == nil { // Recover has no success; never answer 200 with nothing
		return errRecoverSucceeded
	}
	return err
}

var errRecoverSucceeded = errors.New("api: recover returned no error")
