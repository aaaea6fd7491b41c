package lifecycle_test

import (
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/csrd/csrd/hsm"

	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
)

// BenchmarkGenerate is one Generate through lifecycle on the test token
// (SoftHSM dominates; run with -cpuprofile to see csrd's own share):
// `go test -run '^$' -bench Generate ./lifecycle/`.
func BenchmarkGenerate(b *testing.B) {
	db := openStore(b, filepath.Join(b.TempDir(), "csrd.db"))
	svc := lifecycle.New(lifecycle.HSMToken{Token: testToken}, db, policy.Default(), testLog)
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

// benchParallelism × GOMAXPROCS goroutines run the parallel benchmarks
// (64 on two cores: the C=64 cell of the benchmark).
var benchParallelism = 32

// BenchmarkGenerateParallel is Generate from several goroutines at once
// (-cpu and SetParallelism set how many), for comparing with
// BenchmarkRawParallel: what csrd adds when requests overlap.
func BenchmarkGenerateParallel(b *testing.B) {
	tok, err := hsm.Open(context.Background(), hsm.Config{
		Module: testTok.Module, TokenLabel: poolLabelA, PIN: testTok.PIN,
		MaxSessions: 65, PoolWaitTimeout: time.Minute,
	}, testLog)
	if err != nil {
		b.Fatal(err)
	}
	defer tok.Close()
	db := openStore(b, filepath.Join(b.TempDir(), "csrd.db"))
	svc := lifecycle.New(lifecycle.HSMToken{Token: tok}, db, policy.Default(), testLog)
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			req := lifecycle.GenerateRequest{
				Subject: fmt.Sprintf("CN=par-%d.example.com,O=csrd bench,C=US", i),
				SANs:    map[string][]string{"dns": {fmt.Sprintf("par-%d.example.com", i)}},
				Key:     policy.KeyRequest{KeyType: "ECC", KeyLength: 256},
			}
			if _, err := svc.Generate(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRawParallel is the raw PKCS#11 loop (csrd's templates, read the
// public key, sign once) on the same token, one session per goroutine.
func BenchmarkRawParallel(b *testing.B) {
	// Logged in through hsm (login state is the application's), then
	// driven on raw sessions of the same module.
	tok, err := hsm.Open(context.Background(), hsm.Config{
		Module: testTok.Module, TokenLabel: poolLabelA, PIN: testTok.PIN,
		MaxSessions: 2, PoolWaitTimeout: time.Minute,
	}, testLog)
	if err != nil {
		b.Fatal(err)
	}
	defer tok.Close()
	p := pkcs11.New(testTok.Module)
	if err := p.Initialize(); err == nil {
		b.Fatal("module was not initialised by the test token")
	}
	slots, _ := p.GetSlotList(true)
	var slot uint
	for _, s := range slots {
		if ti, err := p.GetTokenInfo(s); err == nil && ti.Label == poolLabelA {
			slot = s
		}
	}
	var n atomic.Int64
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			b.Error(err)
			return
		}
		defer func() {
			if err := p.CloseSession(sh); err != nil {
				b.Error(err)
			}
		}()
		for pb.Next() {
			id := make([]byte, 16)
			_, _ = rand.Read(id)
			t, err := hsm.GenerateTemplates(hsm.KeySpec{Type: hsm.KeyECDSA, Bits: 256, Curve: elliptic.P256()},
				hsm.KeyRef{ID: id, Label: fmt.Sprintf("raw-%d", n.Add(1))})
			if err != nil {
				b.Error(err)
				return
			}
			pub, priv, err := p.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(t.Mechanism, nil)}, t.Public, t.Private)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := p.GetAttributeValue(sh, pub, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)}); err != nil {
				b.Error(err)
				return
			}
			d := sha256.Sum256(id)
			if err := p.SignInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, priv); err != nil {
				b.Error(err)
				return
			}
			if _, err := p.Sign(sh, d[:]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
