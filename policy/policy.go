package policy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/csrd/csrd/csr"
)

// AlgorithmRule is one allowed key algorithm with its allowed sizes (RSA)
// or curves (ECC). Keyfactor's policy model uses the same shape.
type AlgorithmRule struct {
	KeyType    Algorithm `json:"KeyType"`
	BitLengths []int     `json:"BitLengths,omitempty"`
	Curves     []string  `json:"Curves,omitempty"`
}

// Policy is the set of rules a request is decided by.
type Policy struct {
	// Name says where the rules came from; it is recorded with every key.
	Name                     string
	PrimaryKeyAlgorithms     []AlgorithmRule
	AlternativeKeyAlgorithms []AlgorithmRule
}

// Default is the built-in policy: RSA 2048–8192, the NIST curves, Ed25519
// and Ed448; ML-DSA at every level as the alternative key. RSA below 2048
// is never allowed (NIST SP 800-131A).
func Default() *Policy {
	return &Policy{
		Name: "built-in default",
		PrimaryKeyAlgorithms: []AlgorithmRule{
			{KeyType: RSA, BitLengths: []int{2048, 3072, 4096, 8192}},
			{KeyType: ECC, Curves: []string{"P-256", "P-384", "P-521"}},
			{KeyType: Ed25519, BitLengths: []int{255}},
			{KeyType: Ed448, BitLengths: []int{448}},
		},
		AlternativeKeyAlgorithms: []AlgorithmRule{
			{KeyType: MLDSA44}, {KeyType: MLDSA65}, {KeyType: MLDSA87},
		},
	}
}

// Request is what Decide needs to know about a Generate request.
type Request struct {
	Key                 KeyRequest
	Subject             csr.DN
	SANs                *csr.SANs
	Template            string
	EnrollmentPatternID int
}

// Decision is the outcome of an allowed request. It is stored with the key
// record so an auditor can see what was allowed and why.
type Decision struct {
	Policy string  `json:"policy"`
	Key    KeySpec `json:"key"`
	// AltKey is the alternative (ML-DSA) key of a hybrid request, or nil.
	AltKey     *KeySpec        `json:"alt_key,omitempty"`
	Allowed    []AlgorithmRule `json:"allowed"`
	AllowedAlt []AlgorithmRule `json:"allowed_alt,omitempty"`
}

// Decide resolves the requested key and checks it against the policy. It
// returns *Error listing every violation.
func (p *Policy) Decide(req Request) (*Decision, error) {
	// Both halves are resolved before either error is returned, so a
	// client learns every reason at once.
	spec, err := ResolveKey(req.Key)
	alt, hasAlt, altErr := ResolveAltKey(req.Key)
	var vs Violations
	for _, e := range []error{err, altErr} {
		var pe *Error
		if errors.As(e, &pe) {
			vs = append(vs, pe.Violations...)
		}
	}
	if err := vs.err(); err != nil {
		return nil, err
	}
	p.checkKey(p.PrimaryKeyAlgorithms, "KeyType", spec, &vs)
	dec := &Decision{Policy: p.Name, Key: spec, Allowed: p.PrimaryKeyAlgorithms}
	if hasAlt {
		p.checkKey(p.AlternativeKeyAlgorithms, "AlternativeKeyType", alt, &vs)
		dec.AltKey, dec.AllowedAlt = &alt, p.AlternativeKeyAlgorithms
	}
	if err := vs.err(); err != nil {
		return nil, err
	}
	return dec, nil
}

func (p *Policy) checkKey(rules []AlgorithmRule, field string, spec KeySpec, vs *Violations) {
	i := slices.IndexFunc(rules, func(r AlgorithmRule) bool { return r.KeyType == spec.Algorithm })
	if i < 0 {
		vs.add(RuleKeyAlgorithm, field, fmt.Sprintf("%s %s is not allowed by the %s policy", field, spec.Algorithm, p.Name))
		return
	}
	rule := rules[i]
	switch spec.Algorithm {
	case RSA:
		if !slices.Contains(rule.BitLengths, spec.Bits) {
			vs.add(RuleKeyAlgorithm, "KeyLength", fmt.Sprintf("KeyLength %d is not allowed by the %s policy: RSA sizes allowed are %s",
				spec.Bits, p.Name, joinInts(rule.BitLengths)))
		}
	case ECC:
		if !slices.Contains(rule.Curves, spec.Curve) {
			vs.add(RuleKeyAlgorithm, "Curve", fmt.Sprintf("Curve %s is not allowed by the %s policy: ECC curves allowed are %s",
				spec.Curve, p.Name, strings.Join(rule.Curves, ", ")))
		}
	}
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}
