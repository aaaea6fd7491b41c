package loadgen

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
)

func TestParseMix(t *testing.T) {
	tests := []struct {
		in      string
		ok      bool
		weights int
	}{
		{DefaultMix, true, 100},
		{"p256", true, 1},
		{"p256=3,rsa2048=1", true, 4},
		{"p256=0,p384=2", true, 2},
		{"p256=0", false, 0},
		{"p257=1", false, 0},
		{"p256=-1", false, 0},
		{"p256=x", false, 0},
		{"", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m, err := ParseMix(tt.in)
			if (err == nil) != tt.ok || m.total != tt.weights {
				t.Fatalf("ParseMix(%q) = total %d, %v; want ok=%v total %d", tt.in, m.total, err, tt.ok, tt.weights)
			}
		})
	}
}

// TestMixBody: bodies are valid Generate requests in the mix's proportions.
func TestMixBody(t *testing.T) {
	m, err := ParseMix("p256=3,rsa2048=1")
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	counts := map[string]int{}
	for n := range int64(4000) {
		var req struct {
			Subject   string
			KeyType   string
			KeyLength int
			SANs      map[string][]string
		}
		if err := json.Unmarshal(m.Body(r, n), &req); err != nil {
			t.Fatal(err)
		}
		if req.Subject == "" || len(req.SANs["dns"]) != 2 || len(req.SANs["ip4"]) != 1 {
			t.Fatalf("body %d: %+v", n, req)
		}
		counts[req.KeyType]++
	}
	if ecc := counts["ECC"]; ecc < 2800 || ecc > 3200 {
		t.Errorf("ECC share %d of 4000, want about 3000", ecc)
	}
}
