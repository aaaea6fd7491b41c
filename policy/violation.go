package policy

import (
	"strings"
)

// Rule names say which rule refused a request; they are stable strings that
// end up in logs, records and error messages.
const (
	// RuleRequest: the request contradicts itself or names no valid value.
	RuleRequest = "request"
	// RuleKeyAlgorithm: the policy does not allow the key type, size or curve.
	RuleKeyAlgorithm = "key-algorithm"
)

// Violation is one reason a request is refused.
type Violation struct {
	Rule   string `json:"rule"`
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Violations collects every reason a request is refused, so a client learns
// all of them in one round trip rather than one per attempt.
type Violations []Violation

func (vs *Violations) add(rule, field, reason string) {
	*vs = append(*vs, Violation{Rule: rule, Field: field, Reason: reason})
}

func (vs Violations) err() error {
	if len(vs) == 0 {
		return nil
	}
	return &Error{Violations: vs}
}

// Error is returned by ResolveKey and Decide when a request is refused.
// Match it with errors.As.
type Error struct {
	Violations Violations
}

func (e *Error) Error() string {
	return "policy: " + e.Message()
}

// Message is the client-facing text: every reason, in order, joined.
func (e *Error) Message() string {
	reasons := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		reasons[i] = v.Reason
	}
	return strings.Join(reasons, "; ")
}
