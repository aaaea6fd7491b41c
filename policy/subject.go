package policy

import (
	"fmt"
	"strings"

	"github.com/csrd/csrd/csr"
)

// applyDefaults appends, for every default whose attribute the subject
// lacks, that attribute (least specific position, in the order the
// defaults are listed). The request's own values always win.
func (p *pattern) applyDefaults(subject csr.DN, vs *Violations, pv Violation) (csr.DN, []SubjectDefault) {
	var applied []SubjectDefault
	for _, d := range p.defaults {
		if len(d.part.values(subject, nil)) > 0 {
			continue
		}
		next, err := subject.With(d.part.name, d.Value)
		if err != nil {
			// Parse checked every default, so this is a bug; refuse rather
			// than sign a subject the pattern did not mean.
			v := pv
			v.Rule, v.Field, v.Reason = RuleDefaults, d.part.field(), fmt.Sprintf("default %s of %s cannot be applied: %v", d.part.name, p.who(), err)
			*vs = append(*vs, v)
			continue
		}
		subject = next
		applied = append(applied, SubjectDefault{SubjectPart: d.part.name, Value: d.Value})
	}
	return subject, applied
}

// nameCheck records one refusal of a name rule.
type nameCheck func(rule, field, format string, args ...any)

// checkNames applies the pattern's name rules to the final subject and the
// SANs: wildcards, RFC enforcement, the SAN limit and the regexes.
func (p *pattern) checkNames(subject csr.DN, sans *csr.SANs, vs *Violations, pv Violation) {
	add := func(rule, field, format string, args ...any) {
		v := pv
		v.Rule, v.Field, v.Reason = rule, field, fmt.Sprintf(format, args...)
		*vs = append(*vs, v)
	}
	cnPart, _ := lookupPart("CN")
	dnsPart, _ := lookupPart("dns")
	cns := cnPart.values(subject, nil)
	dns := dnsPart.values(nil, sans)
	if !p.eff.AllowWildcards {
		p.checkNoWildcards(cns, dns, add)
	}
	if p.eff.RFCEnforcement {
		p.checkRFC(cns, dns, add)
	}
	if n := sans.Count(); p.eff.MaxSANs > 0 && n > p.eff.MaxSANs {
		add(RuleMaxSANs, "SANs", "%d SANs exceed the limit of %d of %s", n, p.eff.MaxSANs, p.who())
	}
	p.checkRegexes(subject, sans, add)
}

// checkNoWildcards refuses a wildcard CN or dns SAN.
func (p *pattern) checkNoWildcards(cns, dns []string, add nameCheck) {
	for _, cn := range cns {
		if strings.Contains(cn, "*") {
			add(RuleWildcards, "Subject.CN", "wildcard CN %q is not allowed by %s (AllowWildcards is off)", cn, p.who())
		}
	}
	for _, d := range dns {
		if strings.HasPrefix(d, "*.") {
			add(RuleWildcards, "SANs.dns", "wildcard dns SAN %q is not allowed by %s (AllowWildcards is off)", d, p.who())
		}
	}
}

// checkRFC requires a dns SAN and, for every CN that is a host name, that
// it is one of the dns SANs too.
func (p *pattern) checkRFC(cns, dns []string, add nameCheck) {
	if len(dns) == 0 {
		add(RuleRFCEnforcement, "SANs.dns", "%s requires at least one dns SAN (RFCEnforcement)", p.who())
	}
	for _, cn := range cns {
		host, ok := csr.HostName(cn)
		if ok && len(dns) > 0 && !contains(dns, host) {
			add(RuleRFCEnforcement, "Subject.CN", "CN %q must also be one of the dns SANs under %s (RFCEnforcement)", cn, p.who())
		}
	}
}

// checkRegexes refuses every subject attribute or SAN its regex does not
// match, with the regex's own message when it has one.
func (p *pattern) checkRegexes(subject csr.DN, sans *csr.SANs, add nameCheck) {
	for _, r := range p.regexes {
		for _, v := range r.part.values(subject, sans) {
			if r.re.MatchString(v) {
				continue
			}
			if r.Error != "" {
				add(RuleRegex, r.part.field(), "%s %q is refused by %s: %s", r.part.name, v, p.who(), r.Error)
			} else {
				add(RuleRegex, r.part.field(), "%s %q does not match the regex %s of %s", r.part.name, v, r.Regex.Regex, p.who())
			}
		}
	}
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}
