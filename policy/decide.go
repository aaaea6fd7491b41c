package policy

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/csrd/csrd/csr"
)

// Request is what Decide needs to know about a Generate request.
type Request struct {
	Key                 KeyRequest
	Subject             csr.DN
	SANs                *csr.SANs
	Template            string
	EnrollmentPatternID int
}

// Decision is the outcome of an allowed request. It is stored with the key
// record (as JSON) so an auditor can see what was allowed, by which rules,
// and why.
type Decision struct {
	// Policy is where the rules came from: the policy file's path or
	// "built-in default"; PolicySHA256 and PolicyLoadedAt pin the version.
	Policy         string    `json:"policy"`
	PolicySHA256   string    `json:"policy_sha256,omitempty"`
	PolicyLoadedAt time.Time `json:"policy_loaded_at,omitzero"`

	// EnrollmentPatternID and EnrollmentPatternName name the pattern that
	// decided; 0 and "" under the built-in default. ResolvedBy says how it
	// was found: "EnrollmentPatternId", "Template", "default" or
	// "built-in".
	EnrollmentPatternID   int    `json:"enrollment_pattern_id,omitempty"`
	EnrollmentPatternName string `json:"enrollment_pattern_name,omitempty"`
	ResolvedBy            string `json:"resolved_by"`
	// Template is the pattern's template (or, under the built-in default,
	// the Template the request named); TemplateOID its OID if configured.
	Template    string `json:"template,omitempty"`
	TemplateOID string `json:"template_oid,omitempty"`

	Key KeySpec `json:"key"`
	// AltKey is the alternative (ML-DSA) key of a hybrid request, or nil.
	AltKey *KeySpec `json:"alt_key,omitempty"`
	// Allowed and AllowedAlt are the effective key rules the request was
	// checked against.
	Allowed    []AlgorithmRule `json:"allowed"`
	AllowedAlt []AlgorithmRule `json:"allowed_alt"`
	// AllowSealedAlt is the pattern's AllowSealedAlternativeKeys: may the
	// alternative key's seed be kept sealed by the token when the token
	// cannot hold ML-DSA keys? The lifecycle enforces it (RuleSealedAltKey),
	// since only it knows where the key will live.
	AllowSealedAlt bool `json:"allow_sealed_alt"`
	AllowWildcards bool `json:"allow_wildcards"`
	RFCEnforcement bool `json:"rfc_enforcement"`
	MaxSANs        int  `json:"max_sans,omitempty"`

	// DefaultsApplied are the subject attributes the pattern filled in.
	DefaultsApplied []SubjectDefault `json:"defaults_applied,omitempty"`
	// Subject is the subject the CSR must carry: the request's, with the
	// defaults appended (least specific position).
	Subject csr.DN `json:"-"`
}

// Decide resolves the enrollment pattern, the requested key and the subject
// defaults, and checks the request against every rule that applies. It
// returns *Error listing every violation, never only the first.
func (e *Engine) Decide(req Request) (*Decision, error) {
	var vs Violations
	// The key is resolved before anything is checked, so a client learns
	// of a self-contradicting request and of every policy refusal at once.
	spec, err := ResolveKey(req.Key)
	specOK := err == nil
	alt, hasAlt, altErr := ResolveAltKey(req.Key)
	for _, e := range []error{err, altErr} {
		var pe *Error
		if errors.As(e, &pe) {
			vs = append(vs, pe.Violations...)
		}
	}
	p, by := e.resolve(req, &vs)
	if p == nil {
		return nil, vs.err()
	}
	pv := Violation{PatternID: p.id, PatternName: p.name}
	if p.types&EnrollCSRGeneration == 0 {
		v := pv
		v.Rule, v.Field = RuleEnrollmentType, "EnrollmentPatternId"
		v.Reason = fmt.Sprintf("%s does not allow CSR Generation (AllowedEnrollmentTypes %d)", p.who(), p.types)
		vs = append(vs, v)
	}
	if specOK {
		checkKey(keyRules{who: p.who(), levels: p.levels, effective: p.eff.PrimaryKeyAlgorithms}, spec, &vs, pv)
	}
	if hasAlt {
		checkKey(keyRules{who: p.who(), levels: p.altLevels, effective: p.eff.AlternativeKeyAlgorithms, alternative: true}, alt, &vs, pv)
	}
	subject, applied := p.applyDefaults(req.Subject, &vs, pv)
	p.checkNames(subject, req.SANs, &vs, pv)
	if err := vs.err(); err != nil {
		return nil, err
	}
	dec := &Decision{
		Policy: e.info.Source, PolicySHA256: e.info.SHA256, PolicyLoadedAt: e.info.LoadedAt,
		EnrollmentPatternID: p.id, EnrollmentPatternName: p.name, ResolvedBy: by,
		Key: spec, Allowed: cloneRules(p.eff.PrimaryKeyAlgorithms), AllowedAlt: cloneRules(p.eff.AlternativeKeyAlgorithms),
		AllowSealedAlt:  p.eff.AllowSealedAlternativeKeys,
		AllowWildcards:  p.eff.AllowWildcards,
		RFCEnforcement:  p.eff.RFCEnforcement,
		MaxSANs:         p.eff.MaxSANs,
		DefaultsApplied: applied,
		Subject:         subject,
	}
	if hasAlt {
		dec.AltKey = &alt
	}
	switch {
	case p.template != nil:
		dec.Template, dec.TemplateOID = p.template.Name, p.template.OID
	case e.implicit != nil:
		dec.Template = req.Template
	}
	return dec, nil
}

// resolve finds the pattern that decides req: EnrollmentPatternId wins;
// Template alone means that template's default pattern; neither means the
// configured default pattern. A refusal is added to vs and nil returned.
func (e *Engine) resolve(req Request, vs *Violations) (*pattern, string) {
	if e.implicit != nil {
		return e.implicit, "built-in"
	}
	refuse := func(field, format string, args ...any) (*pattern, string) {
		vs.add(RulePattern, field, fmt.Sprintf(format, args...))
		return nil, ""
	}
	tmpl := strings.TrimSpace(req.Template)
	switch {
	case req.EnrollmentPatternID != 0:
		p, ok := e.byID[req.EnrollmentPatternID]
		if !ok {
			return refuse("EnrollmentPatternId", "EnrollmentPatternId %d is not a configured enrollment pattern", req.EnrollmentPatternID)
		}
		if tmpl != "" && (p.template == nil || e.findTemplate(tmpl) != p.template) {
			if p.template == nil {
				return refuse("Template", "Template %q does not match %s, which is not tied to a template", tmpl, p.who())
			}
			return refuse("Template", "Template %q does not match %s, whose template is %q", tmpl, p.who(), p.template.Name)
		}
		return p, "EnrollmentPatternId"
	case tmpl != "":
		t := e.findTemplate(tmpl)
		switch {
		case t == nil:
			return refuse("Template", "Template %q is not a configured template", tmpl)
		case t.defaultPattern == nil:
			return refuse("Template", "Template %q has no enrollment pattern; a template must be configured with at least one enrollment pattern to be used", t.Name)
		}
		return t.defaultPattern, "Template"
	case e.defaultPat != nil:
		return e.defaultPat, "default"
	}
	return refuse("EnrollmentPatternId", "EnrollmentPatternId or Template is required: no default enrollment pattern is configured")
}
