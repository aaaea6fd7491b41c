package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
)

// Generator creates a key in the HSM and returns its CSR. When req.Audit is
// set and Generate succeeds, the row must be on the audit chain (lifecycle
// appends it in the record's completing transaction, on the store api's
// AuditLog writes to).
type Generator interface {
	Generate(ctx context.Context, req lifecycle.GenerateRequest) (*lifecycle.GenerateResult, error)
}

// GenerateRequest is Keyfactor's CSRGeneration/Generate body. Pointers tell
// "absent" from "zero" where Keyfactor's rules need it; names match the
// JSON case-insensitively (encoding/json does, as ASP.NET does).
type GenerateRequest struct {
	Subject              string              `json:"Subject"`
	KeyType              string              `json:"KeyType"`
	KeyLength            *int                `json:"KeyLength"`
	Curve                string              `json:"Curve"`
	AlternativeKeyType   string              `json:"AlternativeKeyType"`
	AlternativeKeyLength *int                `json:"AlternativeKeyLength"`
	AlternativeCurve     string              `json:"AlternativeCurve"`
	SANs                 map[string][]string `json:"SANs"`
	Template             string              `json:"Template"`
	EnrollmentPatternID  *int                `json:"EnrollmentPatternId"`
}

// maxKeyLength bounds KeyLength before any policy sees it; nothing larger
// is a key size any HSM generates.
const maxKeyLength = 16384

// Validate checks the shape of the request: required fields present and
// numbers in range. Meaning (DN syntax, SANs, key rules) is checked by the
// use case. An empty string counts as missing: Keyfactor's SDK sends ""
// for fields the caller did not set.
func (r *GenerateRequest) Validate() error {
	switch {
	case r.Subject == "":
		return badField("Subject is required")
	case r.KeyType == "":
		return badField("KeyType is required (RSA, ECC, ED25519 or ED448)")
	}
	for name, v := range map[string]*int{"KeyLength": r.KeyLength, "AlternativeKeyLength": r.AlternativeKeyLength} {
		if v != nil && (*v < 0 || *v > maxKeyLength) {
			return badField("%s %d is out of range (0 to %d)", name, *v, maxKeyLength)
		}
	}
	if r.EnrollmentPatternID != nil && *r.EnrollmentPatternID < 1 {
		return badField("EnrollmentPatternId %d is not a pattern id (must be 1 or more)", *r.EnrollmentPatternID)
	}
	return nil
}

func (r *GenerateRequest) toUseCase() lifecycle.GenerateRequest {
	deref := func(p *int) int {
		if p == nil {
			return 0
		}
		return *p
	}
	return lifecycle.GenerateRequest{
		Subject: r.Subject,
		SANs:    r.SANs,
		Key: policy.KeyRequest{
			KeyType:              r.KeyType,
			KeyLength:            deref(r.KeyLength),
			Curve:                r.Curve,
			AlternativeKeyType:   r.AlternativeKeyType,
			AlternativeKeyLength: deref(r.AlternativeKeyLength),
			AlternativeCurve:     r.AlternativeCurve,
		},
		Template:            r.Template,
		EnrollmentPatternID: deref(r.EnrollmentPatternID),
	}
}

// GenerateResponse is Keyfactor's success body.
type GenerateResponse struct {
	CSR string `json:"CSR"`
}

func (s *Server) generate(c echo.Context) error {
	var req GenerateRequest
	if err := s.bindJSON(c, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	if err := s.authorizeGenerate(c, &req); err != nil {
		return err
	}
	// Only now, with the body read and the target authorised, is a
	// generation slot taken (see limiter).
	id, _ := identityOf(c)
	release, err := s.genLimit.acquire(c, id.Name)
	if err != nil {
		return err
	}
	defer release()
	uc := req.toUseCase()
	// The success row goes into the transaction that makes the record
	// pending (one commit fewer, and no key without its audit row); a
	// failure is audited by observe as usual.
	uc.Audit = s.successAudit(c, http.StatusOK)
	res, err := s.gen.Generate(c.Request().Context(), uc)
	if err != nil {
		return err
	}
	auditRecord(c, res.ID, res.KeyLabel)
	auditWritten(c, uc.Audit)
	c.Response().Header().Set(echo.HeaderLocation, s.basePath+"/CSRGeneration/Pending/"+strconv.FormatInt(res.ID, 10))
	requestLogger(c, s.log).Info().Int64("record", res.ID).Str("label", res.KeyLabel).Msg("CSR generated")
	return c.JSON(http.StatusOK, GenerateResponse{CSR: res.CSRPEM})
}
