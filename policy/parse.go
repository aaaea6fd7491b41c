package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/csrd/csrd/csr"
)

// ErrInvalidFile matches every error Parse returns for a file it refuses.
var ErrInvalidFile = errors.New("policy: invalid policy file")

// LoadError lists every problem of a refused policy file, so an operator
// fixes them in one pass.
type LoadError struct {
	Source   string
	Problems []string
}

func (e *LoadError) Error() string {
	return fmt.Sprintf("policy: %s: %s", e.Source, strings.Join(e.Problems, "; "))
}

func (e *LoadError) Is(target error) bool { return target == ErrInvalidFile }

// Parse builds an Engine from the bytes of a policy file. source (the path)
// and loadedAt are recorded with every decision, with the SHA-256 of data.
// Unknown keys are an error: a misspelt rule silently ignored would allow
// what the operator meant to forbid. Every problem is reported at once, as
// a *LoadError.
func Parse(data []byte, source string, loadedAt time.Time) (*Engine, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &LoadError{Source: source, Problems: []string{"the file is empty"}}
		}
		return nil, &LoadError{Source: source, Problems: []string{strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	sum := sha256.Sum256(data)
	b := &builder{e: &Engine{
		info: Info{Source: source, SHA256: hex.EncodeToString(sum[:]), LoadedAt: loadedAt.UTC()},
		byID: map[int]*pattern{},
	}}
	b.build(&f)
	if len(b.problems) > 0 {
		return nil, &LoadError{Source: source, Problems: b.problems}
	}
	return b.e, nil
}

type builder struct {
	e        *Engine
	problems []string
	// sysPrimary and sysAlt are the system-wide lists before the minimum
	// RSA size is applied, for telling "not listed" from "too small".
	sysPrimary, sysAlt []AlgorithmRule
}

func (b *builder) add(format string, args ...any) {
	b.problems = append(b.problems, fmt.Sprintf(format, args...))
}

func (b *builder) warn(format string, args ...any) {
	b.e.warnings = append(b.e.warnings, fmt.Sprintf(format, args...))
}

func (b *builder) build(f *File) {
	b.buildSystem(&f.Settings)
	b.buildTemplates(f.Templates)
	if len(f.EnrollmentPatterns) == 0 {
		b.add("EnrollmentPatterns: at least one enrollment pattern is required")
	}
	for i := range f.EnrollmentPatterns {
		b.buildPattern(i, &f.EnrollmentPatterns[i])
	}
	slices.SortFunc(b.e.patterns, func(x, y *pattern) int { return x.id - y.id })
	for _, t := range b.e.templates {
		switch {
		case t.patterns == 0:
			b.warn("template %q has no enrollment pattern, so requests naming it are refused", t.Name)
		case t.defaultPattern == nil:
			b.add("template %q has enrollment patterns but none is its TemplateDefault", t.Name)
		}
	}
	if id := f.DefaultEnrollmentPatternID; id != 0 {
		if p, ok := b.e.byID[id]; ok {
			b.e.defaultPat = p
		} else {
			b.add("DefaultEnrollmentPatternId %d: no enrollment pattern has that Id", id)
		}
	}
}

func (b *builder) buildSystem(s *Settings) {
	const where = "Settings.Policies"
	p := &s.Policies
	eff := Effective{
		AllowWildcards:             boolOr(p.AllowWildcards, false),
		RFCEnforcement:             boolOr(p.RFCEnforcement, true),
		AllowSealedAlternativeKeys: boolOr(p.AllowSealedAlternativeKeys, true),
		MinimumRSAKeySize:          MinRSABits,
	}
	if p.MinimumRSAKeySize != nil {
		eff.MinimumRSAKeySize = b.minRSA(where, *p.MinimumRSAKeySize)
	}
	if p.MaxSANs != nil {
		eff.MaxSANs = b.maxSANs(where, *p.MaxSANs)
	}
	b.sysPrimary = canonicalRules(where+".PrimaryKeyAlgorithms", p.PrimaryKeyAlgorithms, false, b.add)
	switch {
	case b.sysPrimary == nil:
		b.sysPrimary = defaultPrimary()
	case len(b.sysPrimary) == 0 && len(p.PrimaryKeyAlgorithms) == 0:
		b.add("%s.PrimaryKeyAlgorithms: must list at least one key type (leave it out for the built-in list)", where)
	}
	b.sysAlt = canonicalRules(where+".AlternativeKeyAlgorithms", p.AlternativeKeyAlgorithms, true, b.add)
	if b.sysAlt == nil {
		b.sysAlt = defaultAlternative()
	}
	eff.PrimaryKeyAlgorithms = withMinimumRSA(b.sysPrimary, eff.MinimumRSAKeySize)
	eff.AlternativeKeyAlgorithms = cloneRules(b.sysAlt)
	b.e.system = eff
	b.e.sysRegexes = b.compileRegexes("Settings.Regexes", s.Regexes)
	b.e.sysDefaults = b.compileDefaults("Settings.Defaults", s.Defaults)
	b.checkDefaults("Settings", b.e.sysDefaults, b.e.sysRegexes)
}

func (b *builder) minRSA(where string, v int) int {
	if v < MinRSABits || v > MaxRSABits {
		b.add("%s.MinimumRSAKeySize %d: must be from %d to %d", where, v, MinRSABits, MaxRSABits)
		return MinRSABits
	}
	return v
}

func (b *builder) maxSANs(where string, v int) int {
	if v < 0 || v > csr.MaxSANValues {
		b.add("%s.MaxSANs %d: must be from 0 (csrd's bound) to %d", where, v, csr.MaxSANValues)
		return 0
	}
	return v
}

func (b *builder) buildTemplates(ts []Template) {
	for i := range ts {
		t := &ts[i]
		where := fmt.Sprintf("Templates[%d]", i)
		t.Name = strings.TrimSpace(t.Name)
		if t.Name == "" {
			b.add("%s: Name is required", where)
			continue
		}
		where = fmt.Sprintf("template %q", t.Name)
		if b.findTemplate(t.Name) != nil {
			b.add("%s: Name is used twice", where)
			continue
		}
		if t.OID != "" && !isDottedOID(t.OID) {
			b.add("%s: OID %q is not a dotted object identifier", where, t.OID)
		}
		t.PrimaryKeyAlgorithms = canonicalRules(where+": PrimaryKeyAlgorithms", t.PrimaryKeyAlgorithms, false, b.add)
		t.AlternativeKeyAlgorithms = canonicalRules(where+": AlternativeKeyAlgorithms", t.AlternativeKeyAlgorithms, true, b.add)
		b.e.templates = append(b.e.templates, &template{Template: *t})
	}
}

// findTemplate finds a template by name (case-insensitively) or by OID, as
// Keyfactor clients may send either.
func (b *builder) findTemplate(s string) *template { return b.e.findTemplate(s) }

func (e *Engine) findTemplate(s string) *template {
	s = strings.TrimSpace(s)
	for _, t := range e.templates {
		if strings.EqualFold(t.Name, s) || (t.OID != "" && t.OID == s) {
			return t
		}
	}
	return nil
}

func (b *builder) buildPattern(i int, fp *Pattern) {
	where := fmt.Sprintf("EnrollmentPatterns[%d]", i)
	ok := b.checkPatternID(where, fp.ID)
	name := b.patternName(where, fp.Name)
	p := &pattern{id: fp.ID, name: name, desc: fp.Description, templateDflt: fp.TemplateDefault}
	if ok {
		where = p.who()
	}
	p.types = b.enrollmentTypes(where, fp.AllowedEnrollmentTypes)
	b.linkTemplate(where, p, fp)
	b.buildPatternRules(where, p, &fp.Policies)
	own := b.compileRegexes(where+": Regexes", fp.Regexes)
	p.regexes = mergeRegexes(own, b.e.sysRegexes)
	p.defaults = mergeDefaults(b.compileDefaults(where+": Defaults", fp.Defaults), b.e.sysDefaults)
	b.checkDefaults(where, p.defaults, p.regexes)
	if p.types&EnrollCSRGeneration != 0 && len(p.eff.PrimaryKeyAlgorithms) == 0 {
		b.add("%s: no primary key algorithm is left once system-wide, pattern and template rules are intersected", where)
	}
	if ok {
		b.e.byID[p.id] = p
	}
	b.e.patterns = append(b.e.patterns, p)
}

// checkPatternID reports whether id is a valid Id no earlier pattern has.
func (b *builder) checkPatternID(where string, id int) bool {
	if id < 1 || id > 1<<31-1 {
		b.add("%s: Id %d must be from 1 to 2147483647", where, id)
		return false
	}
	if _, dup := b.e.byID[id]; dup {
		b.add("%s: Id %d is used twice", where, id)
		return false
	}
	return true
}

// patternName returns the trimmed Name, reporting one that is absent or
// that an earlier pattern has (case-insensitively).
func (b *builder) patternName(where, name string) string {
	name = strings.TrimSpace(name)
	if name == "" {
		b.add("%s: Name is required", where)
	} else if slices.ContainsFunc(b.e.patterns, func(q *pattern) bool { return strings.EqualFold(q.name, name) }) {
		b.add("%s: Name %q is used twice", where, name)
	}
	return name
}

// enrollmentTypes returns the AllowedEnrollmentTypes bitmask; 0 (nothing
// allowed) when it is absent or not a bitmask.
func (b *builder) enrollmentTypes(where string, types *int) int {
	if types == nil {
		b.add("%s: AllowedEnrollmentTypes is required (a bitmask: 1 PFX, 2 CSR enrollment, 4 CSR Generation)", where)
		return 0
	}
	t := *types
	if t < 0 || t > 7 {
		b.add("%s: AllowedEnrollmentTypes %d is not a bitmask of 1 PFX, 2 CSR enrollment, 4 CSR Generation", where, t)
		return 0
	}
	if t&EnrollCSRGeneration == 0 {
		b.warn("%s does not allow CSR Generation (AllowedEnrollmentTypes %d), so Generate refuses it", where, t)
	}
	return t
}

// linkTemplate ties p to the template it names; a template has at most one
// TemplateDefault pattern.
func (b *builder) linkTemplate(where string, p *pattern, fp *Pattern) {
	if fp.Template == "" {
		if fp.TemplateDefault {
			b.add("%s: TemplateDefault needs a Template", where)
		}
		return
	}
	p.template = b.findTemplate(fp.Template)
	switch {
	case p.template == nil:
		b.add("%s: Template %q is not one of the Templates", where, fp.Template)
		return
	case fp.TemplateDefault && p.template.defaultPattern != nil:
		b.add("%s: template %q already has TemplateDefault pattern %d", where, p.template.Name, p.template.defaultPattern.id)
	case fp.TemplateDefault:
		p.template.defaultPattern = p
	}
	p.template.patterns++
}

func (b *builder) buildPatternRules(where string, p *pattern, fp *Policies) {
	sys := b.e.system
	eff := Effective{
		AllowWildcards:             boolOr(fp.AllowWildcards, sys.AllowWildcards),
		RFCEnforcement:             boolOr(fp.RFCEnforcement, sys.RFCEnforcement),
		AllowSealedAlternativeKeys: boolOr(fp.AllowSealedAlternativeKeys, sys.AllowSealedAlternativeKeys),
		MinimumRSAKeySize:          sys.MinimumRSAKeySize,
		MaxSANs:                    sys.MaxSANs,
	}
	patMin := 0
	if fp.MinimumRSAKeySize != nil {
		patMin = b.minRSA(where+": Policies", *fp.MinimumRSAKeySize)
		// A key rule only narrows: the larger minimum wins.
		eff.MinimumRSAKeySize = max(eff.MinimumRSAKeySize, patMin)
	}
	if fp.MaxSANs != nil {
		eff.MaxSANs = b.maxSANs(where+": Policies", *fp.MaxSANs)
	}
	prim := canonicalRules(where+": Policies.PrimaryKeyAlgorithms", fp.PrimaryKeyAlgorithms, false, b.add)
	alt := canonicalRules(where+": Policies.AlternativeKeyAlgorithms", fp.AlternativeKeyAlgorithms, true, b.add)
	var tPrim, tAlt []AlgorithmRule
	tWhy := ""
	if p.template != nil {
		tPrim, tAlt = p.template.PrimaryKeyAlgorithms, p.template.AlternativeKeyAlgorithms
		tWhy = fmt.Sprintf(" (the CA of template %q does not support it)", p.template.Name)
	}
	eff.PrimaryKeyAlgorithms = withMinimumRSA(intersect(intersect(b.sysPrimary, prim), tPrim), eff.MinimumRSAKeySize)
	eff.AlternativeKeyAlgorithms = intersect(intersect(b.sysAlt, alt), tAlt)
	p.eff = eff
	const sysWhy = " (the system-wide policy does not allow it)"
	p.levels = []level{
		{whyMin: " (below its minimum RSA size " + strconv.Itoa(patMin) + ")", rules: prim, minRSA: patMin},
		{why: tWhy, rules: tPrim},
		{why: sysWhy, whyMin: " (below the system-wide minimum RSA size " + strconv.Itoa(sys.MinimumRSAKeySize) + ")",
			rules: b.sysPrimary, minRSA: sys.MinimumRSAKeySize},
	}
	p.altLevels = []level{{rules: alt}, {why: tWhy, rules: tAlt}, {why: sysWhy, rules: b.sysAlt}}
}

func boolOr(p *bool, dflt bool) bool {
	if p == nil {
		return dflt
	}
	return *p
}

func isDottedOID(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return false
	}
	for _, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" || (len(p) > 1 && p[0] == '0') {
			return false
		}
	}
	return true
}
