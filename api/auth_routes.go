package api

import (
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/csrd/csrd/auth"
	"github.com/csrd/csrd/store"
)

// routeOperations says which grant each API route needs, keyed by
// "METHOD /path" as passed to Server.route (path parameters as ":id"). ""
// means any authenticated identity (read-only information every client
// needs, e.g. Status/Endpoints, which Keyfactor's SDK calls first). A route
// missing here needs admin: fail closed, and TestEveryRouteIsClassified
// makes a new route's author decide.
var routeOperations = map[string]auth.Operation{
	"POST /CSRGeneration/Generate": auth.OpGenerate,
	"GET /Status/Endpoints":        "",
	"GET /Status/HealthCheck":      "",

	"GET /CSRGeneration/Pending":        auth.OpPendingRead,
	"GET /CSRGeneration/Pending/:id":    auth.OpPendingRead,
	"DELETE /CSRGeneration/Pending":     auth.OpPendingDelete,
	"DELETE /CSRGeneration/Pending/:id": auth.OpPendingDelete,
	"POST /Certificates/Import":         auth.OpImport,
	"POST /Certificates/Recover":        auth.OpImport,
	"POST /Enrollment/CSR":              auth.OpEnroll,

	"GET /EnrollmentPatterns":          "",
	"GET /EnrollmentPatterns/Settings": "",
	"GET /EnrollmentPatterns/:id":      "",
}

// routeOperation returns the grant a route needs and whether the route is
// classified at all.
func routeOperation(method, path string) (auth.Operation, bool) {
	// Status/Endpoints spells parameters {id}, echo :id.
	op, ok := routeOperations[method+" "+strings.ReplaceAll(path, "{id}", ":id")]
	if !ok {
		return auth.OpAdmin, false
	}
	return op, true
}

// recordScope is the part of the key records the caller may read, delete,
// import to or recover: what a grant's enrollment patterns and templates
// let it generate (store.Scope applies auth.Grants.AllowsTarget's rule to
// what each record was made for). nil, no limit, for admin and for a grant
// that names neither; an empty scope, nothing, when no identity is known.
func recordScope(c echo.Context) *store.Scope {
	id, ok := identityOf(c)
	switch g := id.Grants; {
	case !ok:
		return &store.Scope{}
	case g.Allows(auth.OpAdmin), len(g.EnrollmentPatterns) == 0 && len(g.Templates) == 0:
		return nil
	default:
		return &store.Scope{Patterns: g.EnrollmentPatterns, Templates: g.Templates}
	}
}
