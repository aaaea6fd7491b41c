package lifecycle_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
)

// BenchmarkGenerate is one Generate through lifecycle on the test token
// (SoftHSM dominates; run with -cpuprofile to see csrd's own share):
// `go test -run '^$' -bench Generate ./lifecycle/`.
func BenchmarkGenerate(b *testing.B) {
	db := openStore(b, filepath.Join(b.TempDir(), "csrd.db"))
	svc := lifecycle.New(testToken, db, policy.Default(), testLog)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		req := lifecycle.GenerateRequest{
			Subject: fmt.Sprintf("CN=bench-%d.example.com,O=csrd bench,C=US", i),
			SANs:    map[string][]string{"dns": {fmt.Sprintf("bench-%d.example.com", i)}},
			Key:     policy.KeyRequest{KeyType: "ECC", KeyLength: 256},
		}
		if _, err := svc.Generate(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
