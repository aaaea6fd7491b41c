package auth

import (
	"fmt"
	"slices"
	"strings"
)

// Operation is something an identity may be allowed to do.
type Operation string

// The operations csrd knows. Admin implies all the others and any
// enrollment pattern or template.
const (
	OpGenerate      Operation = "generate"       // POST CSRGeneration/Generate
	OpPendingRead   Operation = "pending_read"   // GET CSRGeneration/Pending...
	OpPendingDelete Operation = "pending_delete" // DELETE CSRGeneration/Pending...
	OpImport        Operation = "import"         // POST Certificates/Import, Recover
	OpEnroll        Operation = "enroll"         // POST Enrollment/CSR (a CA certifies a pending key)
	OpMetrics       Operation = "metrics"        // GET /metrics (a scraper's token)
	OpAdmin         Operation = "admin"          // everything, incl. csrd's own key API
)

// Operations lists every operation, in documentation order.
func Operations() []Operation {
	return []Operation{OpGenerate, OpPendingRead, OpPendingDelete, OpImport, OpEnroll, OpMetrics, OpAdmin}
}

// Valid reports whether o is a known operation.
func (o Operation) Valid() bool { return slices.Contains(Operations(), o) }

// ParseOperations parses a comma-separated list ("generate,pending_read").
func ParseOperations(s string) ([]Operation, error) {
	var ops []Operation
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		o := Operation(strings.ToLower(f))
		if !o.Valid() {
			return nil, fmt.Errorf("auth: unknown operation %q (known: %s)", f, joinOps(Operations()))
		}
		ops = append(ops, o)
	}
	return ops, nil
}

func joinOps(ops []Operation) string {
	s := make([]string, len(ops))
	for i, o := range ops {
		s[i] = string(o)
	}
	return strings.Join(s, ", ")
}

// Grants is what one identity may do. EnrollmentPatterns and Templates scope
// generation: when both are empty any pattern and template may be used;
// otherwise a request naming an EnrollmentPatternId must name a listed one
// (the pattern wins over the template, as in Keyfactor), and a request naming
// only a Template must name a listed one. A request naming neither is then
// refused: the scope cannot be checked.
type Grants struct {
	Operations         []Operation `yaml:"operations"`
	EnrollmentPatterns []int       `yaml:"enrollment_patterns,omitempty"`
	Templates          []string    `yaml:"templates,omitempty"`
}

// Allows reports whether op is granted.
func (g Grants) Allows(op Operation) bool {
	return slices.Contains(g.Operations, OpAdmin) || slices.Contains(g.Operations, op)
}

// AllowsTarget reports whether a Generate for enrollment pattern id pattern
// (0: none named) and template (""; none named) is inside the scope.
func (g Grants) AllowsTarget(pattern int, template string) bool {
	if slices.Contains(g.Operations, OpAdmin) || len(g.EnrollmentPatterns) == 0 && len(g.Templates) == 0 {
		return true
	}
	if pattern != 0 {
		return slices.Contains(g.EnrollmentPatterns, pattern)
	}
	if template != "" {
		return slices.ContainsFunc(g.Templates, func(t string) bool { return strings.EqualFold(t, template) })
	}
	return false
}

func (g Grants) validate() error {
	if len(g.Operations) == 0 {
		return fmt.Errorf("no operations (known: %s)", joinOps(Operations()))
	}
	for _, o := range g.Operations {
		if !o.Valid() {
			return fmt.Errorf("unknown operation %q (known: %s)", o, joinOps(Operations()))
		}
	}
	for _, p := range g.EnrollmentPatterns {
		if p < 1 {
			return fmt.Errorf("enrollment pattern id %d: must be 1 or more", p)
		}
	}
	for _, t := range g.Templates {
		if strings.TrimSpace(t) == "" {
			return fmt.Errorf("empty template name")
		}
	}
	return nil
}

// Method is how an identity proved who it is.
type Method string

// Authentication methods, as recorded in the audit log.
const (
	MethodBasic  Method = "basic"
	MethodBearer Method = "bearer"
	MethodMTLS   Method = "mtls"
	MethodNone   Method = "none" // authentication disabled (loopback development only)
)

// Identity is an authenticated caller.
type Identity struct {
	Name   string
	Method Method
	Grants Grants
}

// Anonymous is the identity of every request when authentication is
// disabled: it may do everything.
func Anonymous() Identity {
	return Identity{Name: "anonymous", Method: MethodNone, Grants: Grants{Operations: []Operation{OpAdmin}}}
}
