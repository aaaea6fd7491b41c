package api

import (
	"context"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/store"
)

// PendingCSRs is what the pending endpoints need from the use cases. Each
// takes the caller's record scope (nil: no limit; see recordScope): a record
// outside it is left out of lists and counts and is not found by id.
type PendingCSRs interface {
	ListPending(ctx context.Context, q store.PendingQuery) ([]lifecycle.PendingCSR, int, error)
	GetPending(ctx context.Context, id int64, scope *store.Scope) (string, error)
	// Delete and DeleteMany commit audit with the decision to delete (see
	// lifecycle.Service.Delete): no key is destroyed without its row.
	Delete(ctx context.Context, id int64, scope *store.Scope, audit *store.AuditEntry) error
	DeleteMany(ctx context.Context, ids []int64, scope *store.Scope, audit *store.AuditEntry) error
}

func (s *Server) pendingRoutes() {
	s.route(http.MethodGet, "/CSRGeneration/Pending", s.listPending)
	s.route(http.MethodDelete, "/CSRGeneration/Pending", s.deletePendingMany, s.forwardable)
	s.route(http.MethodGet, "/CSRGeneration/Pending/:id", s.getPending)
	s.route(http.MethodDelete, "/CSRGeneration/Pending/:id", s.deletePending, s.forwardable)
}

// PendingCSRResponse is one entry of Keyfactor's pending list.
type PendingCSRResponse struct {
	ID          int64     `json:"Id"`
	CSR         string    `json:"CSR"`
	RequestTime time.Time `json:"RequestTime"` // RFC 3339, UTC ("Z")
	Subject     []string  `json:"Subject"`
}

// CSRTextResponse is Keyfactor's answer for one pending CSR.
type CSRTextResponse struct {
	CSRFilePath *string `json:"CSRFilePath"` // always null: csrd keeps no files
	CSRText     string  `json:"CSRText"`
}

// defaultReturnLimit is Keyfactor's default page size.
const defaultReturnLimit = 50

// PendingQuery is the query string of GET CSRGeneration/Pending, Keyfactor's
// paging parameters. Names match case-insensitively, with or without
// Keyfactor's older "pq." prefix.
type PendingQuery struct {
	QueryString   string
	PageReturned  string
	ReturnLimit   string
	SortField     string
	SortAscending string
}

// subjectQuery is the one QueryString form with an operator csrd supports.
var subjectQuery = regexp.MustCompile(`(?i)^\s*subject\s+-contains\s+"(.*)"\s*$`)

// anyOperator spots a Keyfactor query expression ("Field -op value").
var anyOperator = regexp.MustCompile(`^\s*[A-Za-z_.]+\s+-[A-Za-z]+(\s|$)`)

// Validate turns the query into a store query; every bad value is a 400
// that names the parameter.
func (p PendingQuery) Validate() (store.PendingQuery, error) {
	q := store.PendingQuery{Limit: defaultReturnLimit}
	page := 1
	if p.PageReturned != "" {
		n, err := strconv.Atoi(p.PageReturned)
		if err != nil || n < 1 {
			return q, badField("PageReturned %q must be a page number, 1 or more", p.PageReturned)
		}
		page = n
	}
	if p.ReturnLimit != "" {
		n, err := strconv.Atoi(p.ReturnLimit)
		if err != nil || n < 1 || n > store.MaxPageSize {
			return q, badField("ReturnLimit %q must be between 1 and %d", p.ReturnLimit, store.MaxPageSize)
		}
		q.Limit = n
	}
	if page-1 > (math.MaxInt32-1)/q.Limit {
		return q, badField("PageReturned %d is beyond any page", page)
	}
	q.Offset = (page - 1) * q.Limit
	// Keyfactor's SortAscending is a sort-order enum: 0 ascending, 1 descending.
	switch strings.ToLower(p.SortAscending) {
	case "", "0", "true":
	case "1", "false":
		q.Descending = true
	default:
		return q, badField("SortAscending %q must be 0 (ascending) or 1 (descending)", p.SortAscending)
	}
	switch strings.ToLower(p.SortField) {
	case "", "requesttime":
		q.Sort = store.SortByRequestTime
	case "id":
		q.Sort = store.SortByID
	default:
		return q, badField("SortField %q is not supported; use RequestTime or Id", p.SortField)
	}
	switch m := subjectQuery.FindStringSubmatch(p.QueryString); {
	case m != nil:
		q.SubjectContains = m[1]
	case anyOperator.MatchString(p.QueryString):
		return q, badField(`QueryString %q is not supported; use plain text (matched in the subject) or Subject -contains "text"`, p.QueryString)
	default:
		q.SubjectContains = strings.TrimSpace(p.QueryString)
	}
	return q, nil
}

func pendingQueryFrom(c echo.Context) PendingQuery {
	get := func(name string) string {
		for k, v := range c.QueryParams() {
			if strings.EqualFold(k, name) || strings.EqualFold(k, "pq."+name) {
				return v[0]
			}
		}
		return ""
	}
	return PendingQuery{
		QueryString:   get("QueryString"),
		PageReturned:  get("PageReturned"),
		ReturnLimit:   get("ReturnLimit"),
		SortField:     get("SortField"),
		SortAscending: get("SortAscending"),
	}
}

func (s *Server) listPending(c echo.Context) error {
	q, err := pendingQueryFrom(c).Validate()
	if err != nil {
		return err
	}
	q.Scope = recordScope(c)
	page, total, err := s.pending.ListPending(c.Request().Context(), q)
	if err != nil {
		return err
	}
	out := make([]PendingCSRResponse, len(page))
	for i, p := range page {
		out[i] = PendingCSRResponse{ID: p.ID, CSR: p.CSRPEM, RequestTime: p.RequestTime.UTC(), Subject: p.Summary}
	}
	c.Response().Header().Set("X-Total-Count", strconv.Itoa(total))
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getPending(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	pemText, err := s.pending.GetPending(c.Request().Context(), id, recordScope(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, CSRTextResponse{CSRText: pemText})
}

func (s *Server) deletePending(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	audit := s.successAudit(c, http.StatusNoContent)
	err = s.pending.Delete(c.Request().Context(), id, recordScope(c), audit)
	auditWritten(c, audit)
	if err != nil {
		return err
	}
	requestLogger(c, s.log).Info().Int64("record", id).Msg("pending CSR deleted")
	return c.NoContent(http.StatusNoContent)
}

// maxBulkIDs bounds one bulk delete; each id costs a token operation.
const maxBulkIDs = 1000

func (s *Server) deletePendingMany(c echo.Context) error {
	var ids []int64
	if err := s.bindJSONArray(c, &ids); err != nil {
		return err
	}
	switch {
	case len(ids) == 0:
		return badField("the body must list at least one Id, e.g. [1,2,3]")
	case len(ids) > maxBulkIDs:
		return badField("at most %d Ids per request, got %d", maxBulkIDs, len(ids))
	}
	for _, id := range ids {
		if id < 1 || id > math.MaxInt32 {
			return badField("Id %d is not a request Id (1 to %d)", id, math.MaxInt32)
		}
	}
	audit := s.successAudit(c, http.StatusNoContent)
	err := s.pending.DeleteMany(c.Request().Context(), ids, recordScope(c), audit)
	auditWritten(c, audit)
	if err != nil {
		return err
	}
	requestLogger(c, s.log).Info().Ints64("records", ids).Msg("pending CSRs deleted")
	return c.NoContent(http.StatusNoContent)
}

// pathID reads the :id path parameter, a Keyfactor request Id.
func pathID(c echo.Context) (int64, error) {
	raw := c.Param("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id < 1 || id > math.MaxInt32 {
		return 0, badField("Id %q in the path must be a request Id (1 to %d)", raw, math.MaxInt32)
	}
	return id, nil
}
