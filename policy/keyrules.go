package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// RSA sizes: the floor csrd never goes below (NIST SP 800-131A), the
// largest modulus it generates, and the sizes an RSA rule without
// BitLengths stands for.
const (
	MinRSABits = 2048
	MaxRSABits = 16384
)

var standardRSASizes = []int{2048, 3072, 4096, 8192}

var primaryAlgorithms = []Algorithm{RSA, ECC, Ed25519, Ed448}
var alternativeAlgorithms = []Algorithm{MLDSA44, MLDSA65, MLDSA87}

// canonicalAlgorithm maps a KeyType as written in a policy file to its
// canonical name, accepting the same spellings as a request.
func canonicalAlgorithm(s string) (Algorithm, bool) {
	up := strings.ToUpper(strings.TrimSpace(s))
	switch up {
	case "ECDSA", "EC":
		up = "ECC"
	case "MLDSA44", "MLDSA65", "MLDSA87":
		up = strings.Replace(up, "MLDSA", "ML-DSA", 1)
	}
	a := Algorithm(up)
	if slices.Contains(primaryAlgorithms, a) || slices.Contains(alternativeAlgorithms, a) {
		return a, true
	}
	return "", false
}

// canonicalRules validates a list from the file and returns it in canonical
// form: known KeyTypes of the right kind, no duplicates, RSA BitLengths
// sorted (all standard sizes when absent), ECC curves as canonical names in
// table order (BitLengths 256/384/521 folded in; all curves when neither is
// given). Problems are reported through add, prefixed with where.
func canonicalRules(where string, in []AlgorithmRule, alternative bool, add func(string, ...any)) []AlgorithmRule {
	if in == nil {
		return nil
	}
	allowed := primaryAlgorithms
	kind := "primary"
	if alternative {
		allowed, kind = alternativeAlgorithms, "alternative"
	}
	out := make([]AlgorithmRule, 0, len(in))
	seen := map[Algorithm]bool{}
	for i, r := range in {
		at := fmt.Sprintf("%s[%d]", where, i)
		alg, ok := ruleAlgorithm(at, r, allowed, kind, add)
		if !ok {
			continue
		}
		if seen[alg] {
			add("%s: KeyType %s is listed twice", at, alg)
			continue
		}
		seen[alg] = true
		out = append(out, canonicalSizes(at, alg, r, add))
	}
	return out
}

// ruleAlgorithm returns the canonical KeyType of one rule (its Name when
// KeyType is absent); false when it is unknown or not of the kind the list
// holds.
func ruleAlgorithm(at string, r AlgorithmRule, allowed []Algorithm, kind string, add func(string, ...any)) (Algorithm, bool) {
	kt := r.KeyType
	switch {
	case kt == "":
		kt = r.Name
	case r.Name != "" && !strings.EqualFold(string(r.Name), string(kt)):
		add("%s: Name %q and KeyType %q disagree (give one of them)", at, r.Name, kt)
	}
	alg, ok := canonicalAlgorithm(string(kt))
	switch {
	case !ok:
		add("%s: KeyType %q is not a key type (%s)", at, kt, joinAlgs(allowed))
		return "", false
	case !slices.Contains(allowed, alg):
		add("%s: KeyType %s is not a %s key type (%s)", at, alg, kind, joinAlgs(allowed))
		return "", false
	}
	return alg, true
}

// canonicalSizes returns the rule for alg with its sizes or curves in
// canonical form, reporting those alg does not have.
func canonicalSizes(at string, alg Algorithm, r AlgorithmRule, add func(string, ...any)) AlgorithmRule {
	switch alg {
	case RSA:
		return rsaRule(at, r, add)
	case ECC:
		return eccRule(at, r, add)
	}
	if len(r.Curves) > 0 {
		add("%s: Curves are not valid for %s", at, alg)
	}
	size := edOrMLDSASize(alg)
	for _, b := range r.BitLengths {
		if b != size {
			add("%s: BitLengths %d is not valid for %s (only %d)", at, b, alg, size)
		}
	}
	return AlgorithmRule{KeyType: alg}
}

// rsaRule keeps the listed RSA sizes (the standard ones when none is
// listed), sorted and without duplicates.
func rsaRule(at string, r AlgorithmRule, add func(string, ...any)) AlgorithmRule {
	if len(r.Curves) > 0 {
		add("%s: Curves are not valid for RSA", at)
	}
	bits := slices.Clone(r.BitLengths)
	if r.BitLengths == nil {
		bits = slices.Clone(standardRSASizes)
	}
	for _, b := range bits {
		if b < MinRSABits || b > MaxRSABits || b%8 != 0 {
			add("%s: RSA BitLengths %d is not allowed (a multiple of 8 from %d to %d)", at, b, MinRSABits, MaxRSABits)
		}
	}
	slices.Sort(bits)
	return AlgorithmRule{KeyType: RSA, BitLengths: slices.Compact(bits)}
}

// eccRule names the curves a rule allows, by BitLengths or Curves, in table
// order; every curve when it gives neither.
func eccRule(at string, r AlgorithmRule, add func(string, ...any)) AlgorithmRule {
	want := map[string]bool{}
	for _, b := range r.BitLengths {
		cv, ok := curveByBits(b)
		if !ok {
			add("%s: ECC BitLengths %d is not an ECC size (256, 384 or 521)", at, b)
			continue
		}
		want[cv.name] = true
	}
	for _, s := range r.Curves {
		cv, ok := lookupCurve(strings.TrimSpace(s))
		if !ok {
			add("%s: Curve %q is not a supported curve (P-256, P-384, P-521 or their OIDs)", at, s)
			continue
		}
		want[cv.name] = true
	}
	all := r.BitLengths == nil && r.Curves == nil
	c := AlgorithmRule{KeyType: ECC}
	for _, cv := range curves {
		if all || want[cv.name] {
			c.Curves = append(c.Curves, cv.name)
		}
	}
	return c
}

func edOrMLDSASize(a Algorithm) int {
	switch a {
	case Ed25519:
		return 255
	case Ed448:
		return 448
	}
	return mldsaSets[a]
}

// intersect returns the rules of a that b allows too, narrowed to what
// both allow. b == nil means "no restriction". Entries left without a size
// or curve are dropped.
func intersect(a, b []AlgorithmRule) []AlgorithmRule {
	if b == nil {
		return slices.Clone(a)
	}
	out := []AlgorithmRule{}
	for _, ra := range a {
		i := slices.IndexFunc(b, func(r AlgorithmRule) bool { return r.KeyType == ra.KeyType })
		if i < 0 {
			continue
		}
		if r, ok := narrow(ra, b[i]); ok {
			out = append(out, r)
		}
	}
	return out
}

// narrow returns the sizes or curves of ra that rb allows too; false when
// an RSA or ECC rule is left with none.
func narrow(ra, rb AlgorithmRule) (AlgorithmRule, bool) {
	r := AlgorithmRule{KeyType: ra.KeyType}
	switch ra.KeyType {
	case RSA:
		r.BitLengths = common(ra.BitLengths, rb.BitLengths)
		return r, len(r.BitLengths) > 0
	case ECC:
		r.Curves = common(ra.Curves, rb.Curves)
		return r, len(r.Curves) > 0
	}
	return r, true
}

// common returns the elements of a that b holds too, in a's order.
func common[T comparable](a, b []T) []T {
	var out []T
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// withMinimumRSA drops RSA sizes below min.
func withMinimumRSA(rules []AlgorithmRule, min int) []AlgorithmRule {
	out := make([]AlgorithmRule, 0, len(rules))
	for _, r := range rules {
		if r.KeyType == RSA {
			var bits []int
			for _, b := range r.BitLengths {
				if b >= min {
					bits = append(bits, b)
				}
			}
			if len(bits) == 0 {
				continue
			}
			r.BitLengths = bits
		}
		out = append(out, r)
	}
	return out
}

// allows reports whether rules allow spec. nil rules allow everything.
func allows(rules []AlgorithmRule, spec KeySpec) bool {
	if rules == nil {
		return true
	}
	i := slices.IndexFunc(rules, func(r AlgorithmRule) bool { return r.KeyType == spec.Algorithm })
	if i < 0 {
		return false
	}
	switch spec.Algorithm {
	case RSA:
		return slices.Contains(rules[i].BitLengths, spec.Bits)
	case ECC:
		return slices.Contains(rules[i].Curves, spec.Curve)
	}
	return true
}

// level is one source of key rules a request must satisfy.
type level struct {
	// why is the parenthetical a refusal carries when this level (and not
	// the pattern itself) is the one that refuses; "" for the pattern.
	why string
	// whyMin is the parenthetical when its minimum RSA size refuses.
	whyMin string
	rules  []AlgorithmRule
	minRSA int
}

// keyRules are the rules one key of a request (the primary or the
// alternative one) must satisfy under a pattern.
type keyRules struct {
	who         string          // the pattern, as refusals name it
	levels      []level         // where the rules come from, to name the one that refuses
	effective   []AlgorithmRule // their intersection
	alternative bool
}

// checkKey checks spec against the effective rules and, when refused, names
// the first level that refuses it.
func checkKey(r keyRules, spec KeySpec, vs *Violations, pv Violation) {
	who, effective, alternative := r.who, r.effective, r.alternative
	if allows(effective, spec) {
		return
	}
	why := ""
	for _, l := range r.levels {
		if !allows(l.rules, spec) {
			why = l.why
			break
		}
		if spec.Algorithm == RSA && spec.Bits < l.minRSA {
			why = l.whyMin
			break
		}
	}
	by := who + why
	typeField := "KeyType"
	if alternative {
		typeField = "AlternativeKeyType"
	}
	i := slices.IndexFunc(effective, func(r AlgorithmRule) bool { return r.KeyType == spec.Algorithm })
	switch {
	case i < 0:
		pv.Field = typeField
		pv.Reason = fmt.Sprintf("%s %s is not allowed by %s: %s", typeField, spec.Algorithm, by, describeTypes(effective, alternative))
	case spec.Algorithm == RSA:
		pv.Field = "KeyLength"
		pv.Reason = fmt.Sprintf("KeyLength %d is not allowed by %s: RSA sizes allowed are %s", spec.Bits, by, joinInts(effective[i].BitLengths))
	default: // ECC
		pv.Field = "Curve"
		pv.Reason = fmt.Sprintf("Curve %s is not allowed by %s: ECC curves allowed are %s", spec.Curve, by, strings.Join(effective[i].Curves, ", "))
	}
	pv.Rule = RuleKeyAlgorithm
	*vs = append(*vs, pv)
}

func describeTypes(rules []AlgorithmRule, alternative bool) string {
	if len(rules) == 0 {
		if alternative {
			return "no alternative key is allowed"
		}
		return "no key type is allowed"
	}
	names := make([]Algorithm, len(rules))
	for i, r := range rules {
		names[i] = r.KeyType
	}
	if alternative {
		return "alternative key types allowed are " + joinAlgs(names)
	}
	return "key types allowed are " + joinAlgs(names)
}

// DescribeRules renders rules for people: "RSA 3072, 4096; ECC P-256".
func DescribeRules(rules []AlgorithmRule) string {
	if len(rules) == 0 {
		return "none"
	}
	parts := make([]string, len(rules))
	for i, r := range rules {
		switch r.KeyType {
		case RSA:
			parts[i] = "RSA " + joinInts(r.BitLengths)
		case ECC:
			parts[i] = "ECC " + strings.Join(r.Curves, ", ")
		default:
			parts[i] = string(r.KeyType)
		}
	}
	return strings.Join(parts, "; ")
}

func joinAlgs(as []Algorithm) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}
