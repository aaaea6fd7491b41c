package api

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/csrd/csrd/enroll"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/store"
)

// Enroller is what Enrollment/CSR needs from the enrollment use case.
type Enroller interface {
	Enroll(ctx context.Context, req enroll.Request) (*enroll.Result, error)
}

func (s *Server) enrollmentRoutes() {
	s.route(http.MethodPost, "/Enrollment/CSR", s.enrollCSR, s.forwardable)
}

// EnrollmentCSRRequest is Keyfactor's EnrollmentCSREnrollmentRequest.
// Fields csrd has no use for (owner roles, additional enrollment fields,
// timestamp) are accepted and ignored. Timestamp is kept unparsed: Keyfactor
// (ASP.NET) takes a date-time with or without a zone, and a field nobody
// reads must not refuse a request.
type EnrollmentCSRRequest struct {
	CSR                  string              `json:"CSR"`
	PrivateKey           string              `json:"PrivateKey"`
	CertificateAuthority string              `json:"CertificateAuthority"`
	IncludeChain         bool                `json:"IncludeChain"`
	Template             string              `json:"Template"`
	SANs                 map[string][]string `json:"SANs"`
	EnrollmentPatternID  *int                `json:"EnrollmentPatternId"`
	Metadata             map[string]any      `json:"Metadata"`
	Timestamp            json.RawMessage     `json:"Timestamp"`
}

// Validate checks the shape of the request.
func (r *EnrollmentCSRRequest) Validate() error {
	switch {
	case strings.TrimSpace(r.CSR) == "":
		return badField("CSR is required: the PEM CSR csrd generated (CSRGeneration/Generate or Pending/{id})")
	case r.PrivateKey != "":
		return badField("PrivateKey must be empty: csrd never takes a private key; the CSR's key is already in the HSM")
	}
	return nil
}

// CertificateInformation is Keyfactor's answer to an enrollment.
type CertificateInformation struct {
	SerialNumber        *string  `json:"SerialNumber"`
	IssuerDN            *string  `json:"IssuerDN"`
	Thumbprint          *string  `json:"Thumbprint"`
	KeyfactorID         int64    `json:"KeyfactorID"`
	Certificates        []string `json:"Certificates"`
	WorkflowInstanceID  *string  `json:"WorkflowInstanceId"`
	WorkflowReferenceID *int64   `json:"WorkflowReferenceId"`
	KeyfactorRequestID  int64    `json:"KeyfactorRequestId"`
	RequestDisposition  string   `json:"RequestDisposition"`
	DispositionMessage  string   `json:"DispositionMessage"`
	EnrollmentContext   any      `json:"EnrollmentContext"`
}

// EnrollmentCSRResponse is Keyfactor's EnrollmentCSREnrollmentResponse.
type EnrollmentCSRResponse struct {
	CertificateInformation CertificateInformation `json:"CertificateInformation"`
	Metadata               map[string]string      `json:"Metadata"`
}

// enrollCSR has a CA certify a key csrd holds pending: ISSUED with the
// certificate married to the key, or PENDING while the CA works.
func (s *Server) enrollCSR(c echo.Context) error {
	format, err := certificateFormat(c.Request().Header.Get("X-CertificateFormat"))
	if err != nil {
		return err
	}
	var req EnrollmentCSRRequest
	if err := s.bindJSON(c, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	res, err := s.enroller.Enroll(c.Request().Context(), enroll.Request{
		CSR: req.CSR, CA: req.CertificateAuthority, Template: req.Template, SANs: req.SANs, Scope: recordScope(c),
		Authorize: func(rec *store.KeyRecord) error { return s.authorizeEnroll(c, rec, req.EnrollmentPatternID) },
	})
	if err != nil {
		return err
	}
	auditRecord(c, res.RecordID, lifecycle.Label(res.RecordID))
	info, err := certificateInformation(res, format, req.IncludeChain)
	if err != nil {
		return err
	}
	requestLogger(c, s.log).Info().Int64("record", res.RecordID).Int64("request", res.OrderID).
		Str("disposition", res.Disposition).Msg("enrollment")
	return c.JSON(http.StatusOK, EnrollmentCSRResponse{CertificateInformation: info, Metadata: stringMap(req.Metadata)})
}

// authorizeEnroll applies the caller's pattern and template scope to the
// key's record, as for Generate; an EnrollmentPatternId sent must be the
// record's.
func (s *Server) authorizeEnroll(c echo.Context, rec *store.KeyRecord, pattern *int) error {
	if pattern != nil && *pattern != rec.EnrollmentPatternID {
		return badField("EnrollmentPatternId %d is not the enrollment pattern of the CSR's key (record %d: %d)", *pattern, rec.ID, rec.EnrollmentPatternID)
	}
	id, ok := identityOf(c)
	if ok && id.Grants.AllowsTarget(rec.EnrollmentPatternID, rec.Template) {
		return nil
	}
	auditOf(c).forbidden = true
	return &Error{Status: http.StatusForbidden, Code: CodeForbidden,
		Msg: fmt.Sprintf("%s may not enroll the key of record %d (enrollment pattern %d, template %q)", id.Name, rec.ID, rec.EnrollmentPatternID, rec.Template)}
}

// certificateFormat reads x-certificateformat: PEM (the default) or DER.
func certificateFormat(h string) (string, error) {
	switch f := strings.ToUpper(strings.TrimSpace(h)); f {
	case "", "PEM":
		return "PEM", nil
	case "DER":
		return "DER", nil
	default:
		return "", &Error{Status: http.StatusBadRequest, Code: CodeInvalidField,
			Msg: fmt.Sprintf("x-certificateformat %q: csrd answers PEM or DER (formats with a private key cannot exist: the key stays in the HSM)", h)}
	}
}

func certificateInformation(res *enroll.Result, format string, chain bool) (CertificateInformation, error) {
	info := CertificateInformation{
		KeyfactorID: res.RecordID, KeyfactorRequestID: res.OrderID, Certificates: []string{},
		RequestDisposition: res.Disposition, DispositionMessage: res.Message,
	}
	if res.Disposition != enroll.Issued || len(res.Chain) == 0 {
		return info, nil
	}
	leaf := res.Chain[0]
	serial, issuer, thumb := fmt.Sprintf("%X", leaf.SerialNumber.Bytes()), leaf.Issuer.String(), lifecycle.Thumbprint(leaf.Raw)
	info.SerialNumber, info.IssuerDN, info.Thumbprint = &serial, &issuer, &thumb
	certs := res.Chain
	if !chain {
		certs = certs[:1]
	}
	for _, c := range certs {
		info.Certificates = append(info.Certificates, encodeCert(c, format))
	}
	return info, nil
}

func encodeCert(c *x509.Certificate, format string) string {
	if format == "DER" {
		return base64.StdEncoding.EncodeToString(c.Raw)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// stringMap is Keyfactor's Metadata answer: the request's, as strings.
func stringMap(m map[string]any) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		switch v := v.(type) {
		case string:
			out[k] = v
		case float64:
			out[k] = strconv.FormatFloat(v, 'f', -1, 64)
		case nil:
			out[k] = ""
		default:
			out[k] = fmt.Sprint(v)
		}
	}
	return out
}
