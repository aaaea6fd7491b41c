package policy

import (
	"fmt"
	"regexp"
	"slices"
	"time"
)

// Engine is a loaded, validated policy: the built-in default or a parsed
// policy file. It is immutable once built, so one Engine may decide any
// number of concurrent requests; a reload builds a new Engine.
type Engine struct {
	info   Info
	system Effective
	// sysRegexes and sysDefaults are the system-wide lists, compiled.
	sysRegexes  []compiledRegex
	sysDefaults []compiledDefault
	templates   []*template
	patterns    []*pattern // by Id
	byID        map[int]*pattern
	defaultPat  *pattern
	// implicit decides every request when there are no patterns (the
	// built-in default): system-wide rules only, Template and
	// EnrollmentPatternId recorded as sent.
	implicit *pattern
	warnings []string
}

// Info says where an Engine's rules came from; it is recorded with every
// decision.
type Info struct {
	// Source is the policy file's path, or "built-in default".
	Source string `json:"source"`
	// SHA256 is the hex SHA-256 of the file's bytes; empty for the
	// built-in default.
	SHA256 string `json:"sha256,omitempty"`
	// LoadedAt is when the file was read and parsed.
	LoadedAt time.Time `json:"loaded_at"`
}

// Effective are the rules that apply to one pattern (or system-wide): every
// override resolved, key algorithms intersected.
type Effective struct {
	AllowWildcards             bool
	RFCEnforcement             bool
	AllowSealedAlternativeKeys bool
	MinimumRSAKeySize          int
	// MaxSANs is 0 when only csrd's own bound applies.
	MaxSANs                  int
	PrimaryKeyAlgorithms     []AlgorithmRule
	AlternativeKeyAlgorithms []AlgorithmRule
}

type template struct {
	Template
	// defaultPattern is the TemplateDefault pattern; patterns counts all.
	defaultPattern *pattern
	patterns       int
}

type compiledRegex struct {
	part part
	Regex
	re *regexp.Regexp
}

type compiledDefault struct {
	part part
	SubjectDefault
}

type pattern struct {
	id           int
	name, desc   string
	template     *template
	templateDflt bool
	types        int
	eff          Effective
	// levels are the key rule sources in blame order: the pattern, the
	// template's CA, the system-wide settings.
	levels    []level
	altLevels []level
	regexes   []compiledRegex
	defaults  []compiledDefault
}

// who names the pattern in refusals.
func (p *pattern) who() string {
	if p.id == 0 {
		return "the built-in default policy"
	}
	return fmt.Sprintf("enrollment pattern %d (%q)", p.id, p.name)
}

// BuiltinSource is Info.Source of the built-in default.
const BuiltinSource = "built-in default"

// Default returns the built-in policy, in force when no policy file is
// configured: RSA 2048–8192, the NIST curves, Ed25519 and Ed448; ML-DSA at
// every level as the alternative key; sealed alternative keys allowed. It
// has no patterns or templates, and no subject rules — exactly the key
// rules csrd always enforced.
func Default() *Engine {
	sys := Effective{
		AllowWildcards:             true,
		RFCEnforcement:             false,
		AllowSealedAlternativeKeys: true,
		MinimumRSAKeySize:          MinRSABits,
		PrimaryKeyAlgorithms:       defaultPrimary(),
		AlternativeKeyAlgorithms:   defaultAlternative(),
	}
	e := &Engine{info: Info{Source: BuiltinSource}, system: sys, byID: map[int]*pattern{}}
	e.implicit = &pattern{
		types: EnrollCSRGeneration, eff: sys,
		levels:    []level{{rules: sys.PrimaryKeyAlgorithms, minRSA: sys.MinimumRSAKeySize}},
		altLevels: []level{{rules: sys.AlternativeKeyAlgorithms}},
	}
	return e
}

func defaultPrimary() []AlgorithmRule {
	return []AlgorithmRule{
		{KeyType: RSA, BitLengths: slices.Clone(standardRSASizes)},
		{KeyType: ECC, Curves: []string{"P-256", "P-384", "P-521"}},
		{KeyType: Ed25519},
		{KeyType: Ed448},
	}
}

func defaultAlternative() []AlgorithmRule {
	return []AlgorithmRule{{KeyType: MLDSA44}, {KeyType: MLDSA65}, {KeyType: MLDSA87}}
}

// Info says where the rules came from.
func (e *Engine) Info() Info { return e.info }

// Builtin reports whether e is the built-in default (no policy file).
func (e *Engine) Builtin() bool { return e.implicit != nil }

// Warnings are problems of the file that do not stop it from loading (a
// pattern that can never be used for Generate, an unanchored regex, ...).
func (e *Engine) Warnings() []string { return slices.Clone(e.warnings) }

// DefaultPatternID is the pattern for requests naming neither pattern nor
// template; 0 if none.
func (e *Engine) DefaultPatternID() int {
	if e.defaultPat == nil {
		return 0
	}
	return e.defaultPat.id
}
