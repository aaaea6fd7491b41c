package store

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// BenchmarkGenerateRecord is the database's share of one Generate: the
// record begun, then completed with a CSR and the request's audit row. `go test -bench . ./store/`.
func BenchmarkGenerateRecord(b *testing.B) {
	s, err := Open(context.Background(), b.TempDir()+"/bench.db")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	csrPEM := "-----BEGIN CERTIFICATE REQUEST-----\n" + strings.Repeat("A", 600) + "\n-----END CERTIFICATE REQUEST-----\n"
	decision := json.RawMessage(`{"policy":"built-in default","key":{"Algorithm":"ECC","Bits":256,"Curve":"P-256"},"allowed":[{"KeyType":"RSA","BitLengths":[2048,3072,4096,8192]},{"KeyType":"ECC","Curves":["P-256","P-384","P-521"]}]}`)
	b.ResetTimer()
	for i := range b.N {
		rec := &KeyRecord{
			KeyID: spki(i)[:16], TokenLabel: "csrd-prod", TokenSerial: "8fdff5483430c661",
			KeyType: "ECC", KeySize: 256, Curve: "P-256", Subject: "CN=bench.example.com,O=csrd,C=US",
			SANs: []string{"DNS:bench.example.com"}, Decision: decision,
		}
		id, err := s.BeginKey(ctx, rec, testLabel)
		if err != nil {
			b.Fatal(err)
		}
		audit := &AuditEntry{Actor: "bench", AuthMethod: "bearer", Source: "127.0.0.1", Operation: "generate",
			Result: AuditOK, Status: 200, RequestID: "bench"}
		if err := s.CompleteKey(ctx, id, csrPEM, spki(i), audit); err != nil {
			b.Fatal(err)
		}
	}
}
