package policy

import "slices"

// The views are read-only copies of a loaded policy for listings (the
// EnrollmentPatterns endpoints, csrctl policy check): every value is the one
// that applies, overrides resolved, never a pointer into the Engine.

// SettingsView is the system-wide settings.
type SettingsView struct {
	Policies Effective
	Regexes  []Regex
	Defaults []SubjectDefault
}

// TemplateView is one template.
type TemplateView struct {
	Name         string
	OID          string
	FriendlyName string
	// nil: the template does not restrict key algorithms.
	PrimaryKeyAlgorithms     []AlgorithmRule
	AlternativeKeyAlgorithms []AlgorithmRule
}

// PatternView is one enrollment pattern with the rules that apply to it.
type PatternView struct {
	ID                     int
	Name                   string
	Description            string
	Template               *TemplateView
	TemplateDefault        bool
	AllowedEnrollmentTypes int
	// Default marks the pattern named by DefaultEnrollmentPatternId.
	Default bool
	// Policies are effective: the pattern's overrides over the
	// system-wide values, key algorithms intersected with the template's.
	Policies Effective
	// Regexes and Defaults are effective: the pattern's, plus the
	// system-wide ones for parts the pattern does not name.
	Regexes  []Regex
	Defaults []SubjectDefault
}

// Settings returns the system-wide settings.
func (e *Engine) Settings() SettingsView {
	return SettingsView{Policies: e.system.clone(), Regexes: regexViews(e.sysRegexes), Defaults: defaultViews(e.sysDefaults)}
}

// Patterns returns every enrollment pattern, by Id.
func (e *Engine) Patterns() []PatternView {
	out := make([]PatternView, len(e.patterns))
	for i, p := range e.patterns {
		out[i] = e.view(p)
	}
	return out
}

// Pattern returns the pattern with the given Id.
func (e *Engine) Pattern(id int) (PatternView, bool) {
	p, ok := e.byID[id]
	if !ok {
		return PatternView{}, false
	}
	return e.view(p), true
}

// Templates returns every template, in file order.
func (e *Engine) Templates() []TemplateView {
	out := make([]TemplateView, len(e.templates))
	for i, t := range e.templates {
		out[i] = *t.view()
	}
	return out
}

func (e *Engine) view(p *pattern) PatternView {
	v := PatternView{
		ID: p.id, Name: p.name, Description: p.desc, TemplateDefault: p.templateDflt,
		AllowedEnrollmentTypes: p.types, Default: p == e.defaultPat,
		Policies: p.eff.clone(), Regexes: regexViews(p.regexes), Defaults: defaultViews(p.defaults),
	}
	if p.template != nil {
		v.Template = p.template.view()
	}
	return v
}

func (t *template) view() *TemplateView {
	return &TemplateView{
		Name: t.Name, OID: t.OID, FriendlyName: t.FriendlyName,
		PrimaryKeyAlgorithms: cloneRules(t.PrimaryKeyAlgorithms), AlternativeKeyAlgorithms: cloneRules(t.AlternativeKeyAlgorithms),
	}
}

func (e Effective) clone() Effective {
	e.PrimaryKeyAlgorithms = cloneRules(e.PrimaryKeyAlgorithms)
	e.AlternativeKeyAlgorithms = cloneRules(e.AlternativeKeyAlgorithms)
	return e
}

func cloneRules(rs []AlgorithmRule) []AlgorithmRule {
	if rs == nil {
		return nil
	}
	out := make([]AlgorithmRule, len(rs))
	for i, r := range rs {
		out[i] = AlgorithmRule{KeyType: r.KeyType, BitLengths: slices.Clone(r.BitLengths), Curves: slices.Clone(r.Curves)}
	}
	return out
}

func regexViews(rs []compiledRegex) []Regex {
	out := make([]Regex, len(rs))
	for i, r := range rs {
		cs := r.caseSensitive()
		out[i] = Regex{SubjectPart: r.part.name, Regex: r.Regex.Regex, Error: r.Error, CaseSensitive: &cs}
	}
	return out
}

func defaultViews(ds []compiledDefault) []SubjectDefault {
	out := make([]SubjectDefault, len(ds))
	for i, d := range ds {
		out[i] = SubjectDefault{SubjectPart: d.part.name, Value: d.Value}
	}
	return out
}

func (r compiledRegex) caseSensitive() bool { return r.CaseSensitive == nil || *r.CaseSensitive }
