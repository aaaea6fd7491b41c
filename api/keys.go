package api

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/csrd/csrd/auth"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/store"
)

// KeyDirectory is what the operator key endpoints need from the use cases.
type KeyDirectory interface {
	ListKeys(ctx context.Context, q store.KeyQuery) ([]lifecycle.KeyInfo, error)
	GetKey(ctx context.Context, id int64) (lifecycle.KeyInfo, error)
}

// csrdPrefix roots csrd's own (non-Keyfactor) API.
const csrdPrefix = "/csrd/v1"

// csrdRoute registers an operator endpoint of csrd's own API. It is not
// under the Keyfactor base path and needs no Keyfactor headers; it needs
// the admin grant.
func (s *Server) csrdRoute(method, path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) {
	s.plainRoute(method, csrdPrefix+path, h, append([]echo.MiddlewareFunc{s.authenticate(auth.OpAdmin)}, m...)...)
}

func (s *Server) keyRoutes() {
	s.csrdRoute(http.MethodGet, "/keys", s.listKeys)
	s.csrdRoute(http.MethodGet, "/keys/:id", s.getKey)
}

// KeyView is a key record as operators see it.
type KeyView struct {
	ID                  int64           `json:"id"`
	State               string          `json:"state"`
	Operation           string          `json:"operation_in_progress,omitempty"` // "delete" or "marry" when unfinished
	RequestTime         time.Time       `json:"request_time"`
	UpdatedTime         time.Time       `json:"updated_time"`
	TokenLabel          string          `json:"token_label"`
	TokenSerial         string          `json:"token_serial"`
	KeyLabel            string          `json:"key_label"`
	KeyID               string          `json:"key_id"` // CKA_ID, hex
	KeyURI              string          `json:"key_uri"`
	KeyType             string          `json:"key_type"`
	KeyUsage            string          `json:"key_usage"` // "sign", or more where the token could not restrict it (hsm.require_sign_only false)
	KeySize             int             `json:"key_size,omitempty"`
	Curve               string          `json:"curve,omitempty"`
	SPKISHA256          string          `json:"spki_sha256,omitempty"`
	Subject             string          `json:"subject"`
	SANs                []string        `json:"sans"`
	Template            string          `json:"template,omitempty"`
	EnrollmentPatternID int             `json:"enrollment_pattern_id,omitempty"`
	Decision            json.RawMessage `json:"policy_decision,omitempty"`
	CSR                 string          `json:"csr,omitempty"`
	Reason              string          `json:"reason,omitempty"`     // why failed, deleted, lost or retired
	RenewalOf           int64           `json:"renewal_of,omitempty"` // the record whose certificate this key's renewed
	Certificate         *CertView       `json:"certificate"`
}

// CertView is the certificate married to a key.
type CertView struct {
	Thumbprint  string     `json:"thumbprint"` // SHA-1, as Keyfactor shows it
	Serial      string     `json:"serial"`
	Subject     string     `json:"subject"`
	Issuer      string     `json:"issuer"`
	NotBefore   time.Time  `json:"not_before"`
	NotAfter    time.Time  `json:"not_after"`
	MarriedTime *time.Time `json:"married_time"`
	PEM         string     `json:"pem"`
	ChainPEM    string     `json:"chain_pem,omitempty"`
}

func keyView(k lifecycle.KeyInfo) KeyView {
	r := k.Record
	v := KeyView{
		ID: r.ID, State: string(r.State), Operation: string(r.Intent), RequestTime: r.RequestTime, UpdatedTime: r.UpdatedTime,
		TokenLabel: r.TokenLabel, TokenSerial: r.TokenSerial, KeyLabel: r.KeyLabel, KeyID: hex.EncodeToString(r.KeyID),
		KeyURI: k.URI, KeyType: r.KeyType, KeySize: r.KeySize, Curve: r.Curve, Subject: r.Subject, SANs: r.SANs,
		Template: r.Template, EnrollmentPatternID: r.EnrollmentPatternID, Decision: r.Decision, CSR: r.CSRPEM, Reason: r.FailReason,
		KeyUsage:  cmp.Or(r.KeyUsage, "sign"),
		RenewalOf: r.RenewalOf,
	}
	if v.SANs == nil {
		v.SANs = []string{}
	}
	if len(r.SPKISHA256) > 0 {
		v.SPKISHA256 = hex.EncodeToString(r.SPKISHA256)
	}
	if len(r.Cert.DER) > 0 {
		c := &CertView{
			Thumbprint: r.Cert.Thumbprint, Serial: r.Cert.Serial, Subject: r.Cert.Subject, Issuer: r.Cert.Issuer,
			NotBefore: r.Cert.NotBefore, NotAfter: r.Cert.NotAfter, ChainPEM: r.Cert.ChainPEM,
			PEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.Cert.DER})),
		}
		if !r.MarriedTime.IsZero() {
			t := r.MarriedTime
			c.MarriedTime = &t
		}
		v.Certificate = c
	}
	return v
}

// KeyList is one page of records; NextAfter, when set, is the "after" value
// of the next page.
type KeyList struct {
	Keys      []KeyView `json:"keys"`
	NextAfter *int64    `json:"next_after"`
}

const defaultKeyPage = 100

// listKeys answers GET /csrd/v1/keys?state=&after=&limit=.
func (s *Server) listKeys(c echo.Context) error {
	q := store.KeyQuery{Limit: defaultKeyPage}
	if v := c.QueryParam("state"); v != "" {
		if !store.State(v).Valid() {
			return badField("state %q is not one of %s", v, statesList())
		}
		q.State = store.State(v)
	}
	if v := c.QueryParam("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return badField("after %q must be a record id", v)
		}
		q.AfterID = n
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.MaxPageSize {
			return badField("limit %q must be between 1 and %d", v, store.MaxPageSize)
		}
		q.Limit = n
	}
	keys, err := s.keys.ListKeys(c.Request().Context(), q)
	if err != nil {
		return err
	}
	out := KeyList{Keys: make([]KeyView, len(keys))}
	for i, k := range keys {
		out.Keys[i] = keyView(k)
	}
	if len(keys) == q.Limit {
		next := keys[len(keys)-1].Record.ID
		out.NextAfter = &next
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getKey(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	k, err := s.keys.GetKey(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, keyView(k))
}

func statesList() string {
	var s []string
	for _, st := range store.States() {
		s = append(s, string(st))
	}
	return strings.Join(s, ", ")
}

// KeyLife is what the operator endpoints for a married key's life need
// (enroll.Service): retire it, or have its certificate renewed now.
type KeyLife interface {
	RetireKey(ctx context.Context, id int64, audit *store.AuditEntry) error
	Renew(ctx context.Context, id int64) error
}

func (s *Server) keyLifeRoutes() {
	s.csrdRoute(http.MethodPost, "/keys/:id/retire", s.retireKey, s.forwardable)
	s.csrdRoute(http.MethodPost, "/keys/:id/renew", s.renewKey, s.forwardable)
}

// renewKey makes the certificate of a key csrd enrolled due for renewal
// now; csrd renews it in the background (202).
func (s *Server) renewKey(c echo.Context) error {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id < 1 {
		return badField("key id %q is not a positive integer", c.Param("id"))
	}
	if err := s.life.Renew(c.Request().Context(), id); err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, map[string]any{"id": id, "renewal": "due now"})
}

// retireKey destroys a married key in the token (after its audit row);
// the record becomes retired and keeps its certificate facts.
func (s *Server) retireKey(c echo.Context) error {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id < 1 {
		return badField("key id %q is not a positive integer", c.Param("id"))
	}
	auditRecord(c, id, lifecycle.Label(id))
	audit := s.successAudit(c, http.StatusOK)
	if err := s.life.RetireKey(c.Request().Context(), id, audit); err != nil {
		return err
	}
	auditWritten(c, audit)
	k, err := s.keys.GetKey(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, keyView(k))
}
