package policy

import (
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
	Name                 string
	PrimaryKeyAlgorithms []AlgorithmRule
}

// Default is the built-in policy: RSA 2048–8192 and the NIST curves. RSA
// below 2048 is never allowed (NIST SP 800-131A).
func Default() *Policy {
	return &Policy{
		Name: "built-in default",
		PrimaryKeyAlgorithms: []AlgorithmRule{
			{KeyType: RSA, BitLengths: []int{2048, 3072, 4096, 8192}},
			{KeyType: ECC, Curves: []string{"P-256", "P-384", "P-521"}},
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
	Policy  string          `json:"policy"`
	Key     KeySpec         `json:"key"`
	Allowed []AlgorithmRule `json:"allowed"`
}

// Decide resolves the requested key and checks it against the policy. It
// returns *Error listing every violation.
func (p *Policy) Decide(req Request) (*Decision, error) {
	spec, err := ResolveKey(req.Key)
	if err != nil {
		return nil, err
	}
	var vs Violations
	p.checkKey(spec, &vs)
	if err := vs.err(); err != nil {
		return nil, err
	}
	return &Decision{Policy: p.Name, Key: spec, Allowed: p.PrimaryKeyAlgorithms}, nil
}

func (p *Policy) checkKey(spec KeySpec, vs *Violations) {
	i := slices.IndexFunc(p.PrimaryKeyAlgorithms, func(r AlgorithmRule) bool { return r.KeyType == spec.Algorithm })
	if i < 0 {
		vs.add(RuleKeyAlgorithm, "KeyType", fmt.Sprintf("KeyType %s is not allowed by the %s policy", spec.Algorithm, p.Name))
		return
	}
	rule := p.PrimaryKeyAlgorithms[i]
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
