package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/csrd/csrd/auth"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/store"
)

// AuditLog is where api appends audit rows; *store.Store implements it.
type AuditLog interface {
	AppendAudit(ctx context.Context, e *store.AuditEntry) error
}

// auditState collects, while a request runs, what its audit row says. The
// outer observe middleware creates it; authenticate, the handlers and
// noteError fill it in.
type auditState struct {
	operation       auth.Operation
	identity        auth.Identity
	method          auth.Method // scheme presented, also when it failed
	claimed         string      // name a failed attempt claimed
	unauthenticated bool        // wrong credentials
	noCredentials   bool        // none presented: logged, not audited (anyone could flood it)
	forbidden       bool
	throttled       bool
	code            string // csrd ErrorCode answered, if an error
	recordID        int64
	keyLabel        string
	// source is the client's address when another node forwarded the
	// request (c.RealIP() is that node's); forwardedBy names that node,
	// forwardedTo the node this one forwarded to.
	source, forwardedBy, forwardedTo string
	// written is the row the operation appended itself, in the same
	// transaction as its effect (Generate's completion, the intent of a
	// Delete or an Import): observe logs it, and appends a row of its own
	// only when the request then answered another status (it failed after
	// its effect was decided).
	written *store.AuditEntry
}

const ctxAudit = "csrd.audit"

// auditOf returns the request's audit state (a throw-away one outside
// observe, e.g. in handler unit tests).
func auditOf(c echo.Context) *auditState {
	if st, ok := c.Get(ctxAudit).(*auditState); ok {
		return st
	}
	st := &auditState{}
	c.Set(ctxAudit, st)
	return st
}

// auditRecord tells the audit row which record and key a handler worked on.
func auditRecord(c echo.Context, id int64, label string) {
	st := auditOf(c)
	st.recordID, st.keyLabel = id, label
}

// auditTimeout bounds the audit write, which runs detached from the
// client's cancellation: a client hanging up must not erase its trace.
const auditTimeout = 5 * time.Second

// observe is the outermost middleware: after the response is written (the
// status is final) it counts the request and writes the audit row.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		st := &auditState{}
		c.Set(ctxAudit, st)
		err := next(c)
		status := c.Response().Status
		method, route := s.routeLabel(c)
		s.metrics.Request(method, route, status, time.Since(start))
		// Throttled and credential-less requests are not audited: anyone
		// could fill the table with them. Wrong credentials are, and the
		// throttle bounds how many. Scrapes are not: they change nothing
		// and come every few seconds.
		acted := st.operation != "" && st.operation != auth.OpMetrics
		switch {
		case st.written != nil:
			s.logAudit(c, st.written)
			if status != st.written.Status {
				s.writeAudit(c, st, route, status)
			}
		case !st.throttled && !st.noCredentials && (acted || st.unauthenticated || st.forbidden):
			s.writeAudit(c, st, route, status)
		}
		return err
	}
}

// noteError is the innermost middleware: it sees the error a handler (or
// authenticate) returned before the error handler turns it into a
// response, and notes its ErrorCode for the audit row and any PKCS#11 code
// for the metrics.
func (s *Server) noteError(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if err != nil {
			auditOf(c).code = classify(err).code
			var he *hsm.Error
			if errors.As(err, &he) && he.CKR != 0 {
				s.metrics.PKCS11Error(he.CodeName())
			}
		}
		return err
	}
}

func (s *Server) writeAudit(c echo.Context, st *auditState, route string, status int) {
	if s.audit == nil {
		return
	}
	e := s.auditEntry(c, st, route, status)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request().Context()), auditTimeout)
	defer cancel()
	if err := s.audit.AppendAudit(ctx, e); err != nil {
		s.metrics.AuditFailure()
		requestLogger(c, s.log).Error().Err(err).Str("operation", e.Operation).Str("actor", e.Actor).Msg("audit: could not write the audit row")
		return
	}
	s.logAudit(c, e)
}

// successAudit is the audit row a handler hands to an operation that
// appends it in the transaction that decides its effect, answered with
// status when it succeeds; nil when auditing is off. The handler then
// calls auditWritten, whatever the outcome.
func (s *Server) successAudit(c echo.Context, status int) *store.AuditEntry {
	if s.audit == nil {
		return nil
	}
	_, route := s.routeLabel(c)
	return s.auditEntry(c, auditOf(c), route, status)
}

// auditWritten tells observe that e is already on the chain.
func auditWritten(c echo.Context, e *store.AuditEntry) {
	if e != nil && e.Hash != "" {
		auditOf(c).written = e
	}
}

// auditEntry is the audit row of the request as st describes it.
func (s *Server) auditEntry(c echo.Context, st *auditState, route string, status int) *store.AuditEntry {
	e := &store.AuditEntry{
		Actor:      st.identity.Name,
		AuthMethod: string(st.identity.Method),
		Source:     c.RealIP(),
		Operation:  string(st.operation),
		Result:     auditResult(st, status),
		Status:     status,
		RecordID:   st.recordID,
		KeyLabel:   st.keyLabel,
		RequestID:  c.Response().Header().Get(echo.HeaderXRequestID),
		Detail:     st.code,
	}
	if st.source != "" {
		e.Source = st.source
	}
	for _, f := range []struct{ what, node string }{{"forwarded by node ", st.forwardedBy}, {"forwarded to node ", st.forwardedTo}} {
		if f.node != "" {
			e.Detail = strings.TrimPrefix(e.Detail+"; "+f.what+f.node, "; ")
		}
	}
	if e.Actor == "" {
		e.Actor, e.AuthMethod = st.claimed, string(st.method)
	}
	if e.Operation == "" {
		e.Operation = c.Request().Method + " " + route
	}
	if e.RecordID == 0 {
		if id, err := strconv.ParseInt(c.Param("id"), 10, 64); err == nil && id > 0 {
			e.RecordID = id
		}
	}
	// A record's key label follows from its id; name it only when the
	// call succeeded, i.e. the record exists.
	if e.KeyLabel == "" && e.RecordID > 0 && e.Result == store.AuditOK {
		e.KeyLabel = lifecycle.Label(e.RecordID)
	}
	return e
}

// logAudit writes the journal's copy of an appended row: a truncated
// table still shows in the logs.
func (s *Server) logAudit(c echo.Context, e *store.AuditEntry) {
	requestLogger(c, s.log).Info().Int64("audit_id", e.ID).Str("actor", e.Actor).Str("auth", e.AuthMethod).
		Str("operation", e.Operation).Str("result", e.Result).Int("status", e.Status).
		Int64("record", e.RecordID).Str("hash", e.Hash).Msg("audit")
}

func auditResult(st *auditState, status int) string {
	switch {
	case st.unauthenticated:
		return store.AuditUnauthenticated
	case st.forbidden || status == http.StatusForbidden:
		return store.AuditForbidden
	case st.throttled:
		return store.AuditThrottled
	case status >= 500:
		return store.AuditError
	case status >= 400:
		return store.AuditRefused
	}
	return store.AuditOK
}
