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
	// RulePattern: no enrollment pattern can be resolved for the request
	// (unknown id or template, template mismatch, no default).
	RulePattern = "enrollment-pattern"
	// RuleEnrollmentType: the pattern does not allow CSR Generation.
	RuleEnrollmentType = "enrollment-type"
	// RuleRegex: a subject attribute or SAN does not match its regex.
	RuleRegex = "regex"
	// RuleWildcards: a wildcard name where AllowWildcards is off.
	RuleWildcards = "wildcards"
	// RuleRFCEnforcement: no dns SAN, or a host-name CN missing from them.
	RuleRFCEnforcement = "rfc-enforcement"
	// RuleMaxSANs: more SANs than the pattern allows.
	RuleMaxSANs = "max-sans"
	// RuleDefaults: a subject default could not be applied.
	RuleDefaults = "defaults"
	// RuleSealedAltKey: the policy forbids sealed alternative keys and the
	// token cannot hold the alternative key itself.
	RuleSealedAltKey = "sealed-alternative-key"
)

// Refuse builds the *Error for one violation, for rules that need facts
// Decide does not see (such as what the token can hold).
func Refuse(rule, field, reason string) *Error {
	return &Error{Violations: Violations{{Rule: rule, Field: field, Reason: reason}}}
}

// Violation is one reason a request is refused.
type Violation struct {
	Rule   string `json:"rule"`
	Field  string `json:"field"`
	Reason string `json:"reason"`
	// PatternID and PatternName name the enrollment pattern whose rule
	// refused; zero for refusals of the request itself or of the
	// built-in default.
	PatternID   int    `json:"pattern_id,omitempty"`
	PatternName string `json:"pattern_name,omitempty"`
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
