package api

import (
	"context"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/csrd/csrd/health"
)

// Readiness answers /readyz: the same checks that gate the systemd watchdog.
type Readiness interface {
	Check(ctx context.Context) health.Report
}

// healthBody is what /healthz and /readyz return: check names and ok or
// failing and, with TokenStates, each token's label and state in hsm's
// fixed phrases (e.g. "PIN refused; waiting for a different PIN in the PIN
// file") so an operator sees which token is wrong and why — nothing else
// (no versions, paths, return codes, error texts or PINs).
type healthBody struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks,omitempty"`
	Tokens map[string]string `json:"tokens,omitempty"`
}

// routeHealth registers /healthz and /readyz at the root, outside the base
// path: they are for load balancers and orchestrators, which send neither
// Keyfactor headers nor credentials, so no API middleware applies to them.
func (s *Server) routeHealth() {
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		s.plainRoute(m, "/healthz", s.healthz)
		s.plainRoute(m, "/readyz", s.readyz)
	}
}

// healthz: the process is up and serving HTTP. It checks nothing else, so
// an orchestrator does not restart csrd for an HSM outage it will ride out.
func (s *Server) healthz(c echo.Context) error {
	return s.healthReply(c, http.StatusOK, healthBody{Status: "ok"})
}

// readyz: the HSM session is usable, the database writable and the policy
// loaded. Failing checks are logged with their cause, and named (only) in
// the answer, beside each token's state phrase when TokenStates is set.
func (s *Server) readyz(c echo.Context) error {
	if s.ready == nil {
		return s.healthReply(c, http.StatusOK, healthBody{Status: "ready"})
	}
	r := s.ready.Check(c.Request().Context())
	body := healthBody{Status: "ready", Checks: map[string]string{}}
	if s.tokenStates != nil {
		body.Tokens = s.tokenStates()
	}
	for name, ok := range r.Checks {
		body.Checks[name] = "ok"
		if !ok {
			body.Checks[name] = "failing"
		}
	}
	if r.Ready {
		return s.healthReply(c, http.StatusOK, body)
	}
	body.Status = "not ready"
	l := requestLogger(c, s.log).Warn()
	for name, err := range r.Errors {
		l = l.AnErr(name, err)
	}
	l.Msg("not ready")
	c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfter))
	return s.healthReply(c, http.StatusServiceUnavailable, body)
}

func (s *Server) healthReply(c echo.Context, status int, body healthBody) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	if c.Request().Method == http.MethodHead {
		return c.NoContent(status)
	}
	return c.JSON(status, body)
}

// statusHealthCheck is Keyfactor's GET Status/HealthCheck (its v25 SDK's
// StatusApi.GetStatusHealthCheck, which takes any status below 300 as
// healthy): 204 when csrd is ready, else the Keyfactor-shaped 503 of an
// unavailable service, naming the failing checks (never their causes).
func (s *Server) statusHealthCheck(c echo.Context) error {
	if s.ready != nil {
		r := s.ready.Check(c.Request().Context())
		if !r.Ready {
			var failing []string
			for name, ok := range r.Checks {
				if !ok {
					failing = append(failing, name)
				}
			}
			sort.Strings(failing)
			code := CodeHSMUnavailable
			if db, ok := r.Checks["database"]; ok && !db && r.Checks["hsm"] {
				code = CodeStoreUnavailable
			}
			return &Error{Status: http.StatusServiceUnavailable, Code: code,
				Msg: "csrd is not ready (failing: " + strings.Join(failing, ", ") + "); try again later"}
		}
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.NoContent(http.StatusNoContent)
}
