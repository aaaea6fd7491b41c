package policy

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/csrd/csrd/csr"
)

// This file compiles the name rules of a policy file: Regexes and Defaults,
// system-wide and per pattern.

func (b *builder) compileRegexes(where string, in []Regex) []compiledRegex {
	var out []compiledRegex
	seen := map[string]bool{}
	for i, r := range in {
		at := fmt.Sprintf("%s[%d]", where, i)
		pt, ok := lookupPart(r.SubjectPart)
		if !ok {
			b.add("%s: SubjectPart %q is neither a subject attribute (CN, O, OU, L, ST, C, E, ...) nor a SAN type (dns, ip4, ip6, ip, uri, rfc822, ms_ntprincipalname, registeredid)", at, r.SubjectPart)
			continue
		}
		if seen[pt.key] {
			b.add("%s: SubjectPart %s has two regexes; combine them into one", at, pt.name)
			continue
		}
		seen[pt.key] = true
		if r.Regex == "" {
			b.add("%s: Regex is required", at)
			continue
		}
		src := r.Regex
		c := compiledRegex{part: pt, Regex: r}
		if !c.caseSensitive() {
			src = "(?i)" + src
		}
		re, err := regexp.Compile(src)
		if err != nil {
			b.add("%s: Regex %q for %s does not compile: %v", at, r.Regex, pt.name, err)
			continue
		}
		c.re = re
		if !strings.HasPrefix(r.Regex, "^") || !strings.HasSuffix(r.Regex, "$") {
			b.warn("%s: Regex %q for %s is not anchored at both ends (^...$), so it also matches values that merely contain a match", at, r.Regex, pt.name)
		}
		out = append(out, c)
	}
	return out
}

func (b *builder) compileDefaults(where string, in []SubjectDefault) []compiledDefault {
	var out []compiledDefault
	seen := map[string]bool{}
	for i, d := range in {
		at := fmt.Sprintf("%s[%d]", where, i)
		pt, ok := lookupPart(d.SubjectPart)
		switch {
		case !ok:
			b.add("%s: SubjectPart %q is not a subject attribute", at, d.SubjectPart)
			continue
		case pt.san != sanNone:
			b.add("%s: SubjectPart %s is a SAN type; Defaults fill in subject attributes only", at, pt.name)
			continue
		case seen[pt.key]:
			b.add("%s: SubjectPart %s has two defaults", at, pt.name)
			continue
		}
		seen[pt.key] = true
		if _, err := (csr.DN{}).With(pt.name, d.Value); err != nil || d.Value == "" {
			reason := "empty value"
			var de *csr.DNError
			if errors.As(err, &de) {
				reason = de.Reason
			}
			b.add("%s: Value %q for %s is not valid: %s", at, d.Value, pt.name, reason)
			continue
		}
		out = append(out, compiledDefault{part: pt, SubjectDefault: d})
	}
	return out
}

// checkDefaults refuses a default that the regex for its own part would
// refuse: every request relying on it would fail.
func (b *builder) checkDefaults(where string, ds []compiledDefault, regexes []compiledRegex) {
	for _, d := range ds {
		for _, r := range regexes {
			if r.part.key == d.part.key && !r.re.MatchString(d.Value) {
				b.add("%s: default %s %q does not match the Regex %q that applies to it", where, d.part.name, d.Value, r.Regex.Regex)
			}
		}
	}
}

// mergeRegexes: the pattern's entries, then the system-wide entries for
// parts the pattern does not constrain itself.
func mergeRegexes(own, sys []compiledRegex) []compiledRegex {
	out := slices.Clone(own)
	for _, s := range sys {
		if !slices.ContainsFunc(own, func(o compiledRegex) bool { return o.part.key == s.part.key }) {
			out = append(out, s)
		}
	}
	return out
}

func mergeDefaults(own, sys []compiledDefault) []compiledDefault {
	out := slices.Clone(own)
	for _, s := range sys {
		if !slices.ContainsFunc(own, func(o compiledDefault) bool { return o.part.key == s.part.key }) {
			out = append(out, s)
		}
	}
	return out
}
