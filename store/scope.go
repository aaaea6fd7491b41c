package store

import (
	"encoding/json"
	"slices"
)

// Scope limits a caller to the records made for some enrollment patterns or
// templates. A record is in scope when its enrollment pattern is listed,
// or, made without one, when its template is listed (ASCII letters compared
// case-insensitively, as SQLite's lower() does); a record with neither is in
// no scope. That is the rule a scoped grant applies to Generate, applied to
// what a record was made for, so a caller sees exactly the records it could
// have made. A nil *Scope is no limit.
type Scope struct {
	Patterns  []int
	Templates []string
}

// Contains reports whether a record made for pattern (0: none) and
// template ("": none) is in s.
func (s *Scope) Contains(pattern int, template string) bool {
	switch {
	case s == nil:
		return true
	case pattern != 0:
		return slices.Contains(s.Patterns, pattern)
	case template != "":
		return slices.ContainsFunc(s.Templates, func(t string) bool { return asciiLower(t) == asciiLower(template) })
	}
	return false
}

// Has reports whether rec is in s.
func (s *Scope) Has(rec *KeyRecord) bool { return s.Contains(rec.EnrollmentPatternID, rec.Template) }

// scopeWhere is Contains in SQL over the keys table, taking ?2 (1 when
// scoped), ?3 (the patterns, a JSON array) and ?4 (the templates in ASCII
// lower case, a JSON array). Zero and "" are stored as NULL.
const scopeWhere = `(?2 = 0 OR CASE
        WHEN enrollment_pattern_id IS NOT NULL THEN enrollment_pattern_id IN (SELECT CAST(value AS INTEGER) FROM json_each(?3))
        WHEN template IS NOT NULL THEN lower(template) IN (SELECT value FROM json_each(?4))
        ELSE FALSE END)`

// args returns scopeWhere's ?2, ?3 and ?4.
func (s *Scope) args() (scoped int, patterns, templates string) {
	if s == nil {
		return 0, "[]", "[]"
	}
	lower := make([]string, len(s.Templates))
	for i, t := range s.Templates {
		lower[i] = asciiLower(t)
	}
	p, _ := json.Marshal(append([]int{}, s.Patterns...)) // ints and strings always marshal
	t, _ := json.Marshal(lower)
	return 1, string(p), string(t)
}

// asciiLower lower-cases ASCII letters only, exactly as SQLite's lower().
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
