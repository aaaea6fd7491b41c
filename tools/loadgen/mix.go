package loadgen

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// kinds are the key kinds a mix may name, as Keyfactor clients ask for them.
var kinds = map[string]struct {
	KeyType   string
	KeyLength int
}{
	"p256":    {"ECC", 256},
	"p384":    {"ECC", 384},
	"p521":    {"ECC", 521},
	"rsa2048": {"RSA", 2048},
	"rsa3072": {"RSA", 3072},
	"rsa4096": {"RSA", 4096},
}

// Mix is a weighted choice of key kinds.
type Mix struct {
	names   []string
	weights []int
	total   int
}

// DefaultMix is mostly P-256 (what most enrolment asks for, and cheap in a
// software token) with some P-384 and a little RSA-2048 so slow generations
// overlap fast ones.
const DefaultMix = "p256=90,p384=8,rsa2048=2"

// ParseMix reads "kind=weight,..." e.g. "p256=90,rsa2048=10".
func ParseMix(s string) (Mix, error) {
	var m Mix
	for _, part := range strings.Split(s, ",") {
		name, w, ok := strings.Cut(strings.TrimSpace(part), "=")
		if _, known := kinds[name]; !known {
			names := make([]string, 0, len(kinds))
			for k := range kinds {
				names = append(names, k)
			}
			slices.Sort(names)
			return Mix{}, fmt.Errorf("loadgen: mix %q: unknown kind %q (known: %s)", s, name, strings.Join(names, ", "))
		}
		weight := 1
		if ok {
			var err error
			if weight, err = strconv.Atoi(w); err != nil || weight < 0 {
				return Mix{}, fmt.Errorf("loadgen: mix %q: weight of %s must be a non-negative integer", s, name)
			}
		}
		m.names = append(m.names, name)
		m.weights = append(m.weights, weight)
		m.total += weight
	}
	if m.total == 0 {
		return Mix{}, fmt.Errorf("loadgen: mix %q has no positive weight", s)
	}
	return m, nil
}

// pick returns a kind name chosen by weight.
func (m Mix) pick(r *rand.Rand) string {
	n := r.IntN(m.total)
	for i, w := range m.weights {
		if n < w {
			return m.names[i]
		}
		n -= w
	}
	return m.names[len(m.names)-1]
}

// Body returns a valid Generate body for request number n: a kind from the
// mix, a subject and SANs unique to n.
func (m Mix) Body(r *rand.Rand, n int64) []byte {
	k := kinds[m.pick(r)]
	host := fmt.Sprintf("load-%d.example.com", n)
	b, _ := json.Marshal(map[string]any{
		"Subject":   "CN=" + host + ",OU=Load,O=\"csrd, load test\",C=US",
		"KeyType":   k.KeyType,
		"KeyLength": k.KeyLength,
		"SANs": map[string][]string{
			"dns": {host, "www." + host},
			"ip4": {fmt.Sprintf("10.%d.%d.%d", n>>16&0xff, n>>8&0xff, n&0xff)},
		},
	})
	return b
}
