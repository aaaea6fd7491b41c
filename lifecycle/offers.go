package lifecycle

import (
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/policy"
)

// Offers reports whether a token of the pool can make a key of algorithm
// alg (bits for RSA, curve for ECC; ML-DSA as an alternative key, in the
// token or sealed by it) — by each token's profile, without touching it.
// The advertised algorithms (EnrollmentPatterns) show only these, so a
// client is not offered what every Generate would refuse. A token not
// connected yet has no profile and is taken at the policy's word.
func (s *Service) Offers(alg policy.Algorithm, bits int, curve string) bool {
	if _, ok := mldsaSets[alg]; ok {
		for _, t := range s.tokens.Tokens() {
			if t.MLDSAStorage() != hsm.AltStorageNone {
				return true
			}
		}
		return false
	}
	spec, err := hsmSpec(policy.KeySpec{Algorithm: alg, Bits: bits, Curve: curve})
	if err != nil {
		return false
	}
	for _, t := range s.tokens.Tokens() {
		if t.CanGenerate(spec) == nil {
			return true
		}
	}
	return false
}
