package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
)

// newRef returns a fresh reference with a token-generated ID.
func newRef(t *testing.T, prefix string) KeyRef {
	t.Helper()
	return refOn(t, testTok, prefix)
}

// refOn is newRef on tok.
func refOn(t *testing.T, tok *Token, prefix string) KeyRef {
	t.Helper()
	id, err := tok.NewKeyID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return KeyRef{ID: id, Label: fmt.Sprintf("%s-%x", prefix, id[:4])}
}

// destroyAtEnd destroys a key the test generated when the test ends: a key
// left behind changes what later tests find on the shared token.
func destroyAtEnd(t *testing.T, key interface{ Destroy(context.Context) error }) {
	t.Helper()
	t.Cleanup(func() {
		if err := key.Destroy(context.Background()); err != nil {
			t.Errorf("destroy the test's key: %v", err)
		}
	})
}

// destroyRefAtEnd destroys ref's objects when the test ends. ErrNotFound is
// no failure: the test may have destroyed them itself.
func destroyRefAtEnd(t *testing.T, ref KeyRef) {
	t.Helper()
	t.Cleanup(func() {
		if err := testTok.DestroyKey(context.Background(), ref); err != nil && !errors.Is(err, ErrNotFound) {
			t.Errorf("destroy %s: %v", ref, err)
		}
	})
}

func digest(h crypto.Hash, msg []byte) []byte {
	switch h {
	case crypto.SHA384:
		d := sha512.Sum384(msg)
		return d[:]
	case crypto.SHA512:
		d := sha512.Sum512(msg)
		return d[:]
	}
	d := sha256.Sum256(msg)
	return d[:]
}

func TestGenerateKeyPair(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		spec KeySpec
		hash crypto.Hash // as csr.SignatureAlgorithm picks it
	}{
		{KeySpec{Type: KeyRSA, Bits: 2048}, crypto.SHA256},
		{KeySpec{Type: KeyRSA, Bits: 3072}, crypto.SHA256},
		{KeySpec{Type: KeyRSA, Bits: 4096}, crypto.SHA256},
		{KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}, crypto.SHA256},
		{KeySpec{Type: KeyECDSA, Curve: elliptic.P384()}, crypto.SHA384},
		{KeySpec{Type: KeyECDSA, Curve: elliptic.P521()}, crypto.SHA512},
	}
	for _, tt := range tests {
		t.Run(tt.spec.String(), func(t *testing.T) {
			ref := newRef(t, "gen")
			before, err := testTok.CountObjects(ctx)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			key, err := testTok.GenerateKeyPair(ctx, tt.spec, ref)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("generated in %v", time.Since(start).Round(time.Millisecond))
			destroyed := false
			defer func() {
				if !destroyed {
					_ = key.Destroy(ctx)
				}
			}()
			if got := key.Ref(); got.Label != ref.Label || string(got.ID) != string(ref.ID) {
				t.Errorf("Ref() = %v, want %v", got, ref)
			}

			// The public key is what was asked for.
			switch pub := key.Public().(type) {
			case *rsa.PublicKey:
				if tt.spec.Type != KeyRSA || pub.N.BitLen() != tt.spec.Bits || pub.E != 65537 {
					t.Errorf("public key RSA-%d e=%d, want %v", pub.N.BitLen(), pub.E, tt.spec)
				}
			case *ecdsa.PublicKey:
				if tt.spec.Type != KeyECDSA || pub.Curve != tt.spec.Curve {
					t.Errorf("public key ECDSA %s, want %v", pub.Curve.Params().Name, tt.spec)
				}
			default:
				t.Fatalf("public key %T", pub)
			}

			// It signs, and standard library verification accepts the result.
			msg := []byte("csrd " + tt.spec.String())
			d := digest(tt.hash, msg)
			sig, err := key.Sign(rand.Reader, d, tt.hash)
			if err != nil {
				t.Fatal(err)
			}
			switch pub := key.Public().(type) {
			case *rsa.PublicKey:
				if err := rsa.VerifyPKCS1v15(pub, tt.hash, d, sig); err != nil {
					t.Errorf("PKCS#1 v1.5 signature does not verify: %v", err)
				}
				pss := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: tt.hash}
				psig, err := key.Sign(rand.Reader, d, pss)
				if err != nil {
					t.Fatal(err)
				}
				if err := rsa.VerifyPSS(pub, tt.hash, d, psig, pss); err != nil {
					t.Errorf("PSS signature does not verify: %v", err)
				}
			case *ecdsa.PublicKey:
				// crypto11 returns ASN.1 DER, which VerifyASN1 requires.
				if !ecdsa.VerifyASN1(pub, d, sig) {
					t.Error("ECDSA signature (DER) does not verify")
				}
			}

			// The token reports a signing-only, non-extractable key. The raw
			// session can see this CKA_PRIVATE object only because it shares the login.
			attrs, err := testTok.KeyAttributes(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			wantType := uint(pkcs11.CKK_RSA)
			if tt.spec.Type == KeyECDSA {
				wantType = pkcs11.CKK_EC
			}
			want := Attributes{
				Sensitive: true, Extractable: false, NeverExtractable: true, AlwaysSensitive: true,
				Sign: true, Decrypt: false, Unwrap: false, Derive: false, Token: true, Private: true,
				KeyType: wantType, Label: ref.Label, ID: ref.ID,
			}
			if fmt.Sprint(attrs) != fmt.Sprint(want) {
				t.Errorf("KeyAttributes:\n got %+v\nwant %+v", attrs, want)
			}
			pubAttrs := publicAttributes(t, ref)
			for name, want := range map[string]bool{"VERIFY": true, "ENCRYPT": false, "WRAP": false, "VERIFY_RECOVER": false, "TOKEN": true} {
				if pubAttrs[name] != want {
					t.Errorf("public key CKA_%s = %v, want %v", name, pubAttrs[name], want)
				}
			}

			if n, err := testTok.CountObjects(ctx); err != nil || n != before+2 {
				t.Errorf("CountObjects after generate = %d, %v; want %d", n, err, before+2)
			}
			if err := key.Destroy(ctx); err != nil {
				t.Fatal(err)
			}
			destroyed = true
			if n, err := testTok.CountObjects(ctx); err != nil || n != before {
				t.Errorf("CountObjects after Destroy = %d, %v; want %d", n, err, before)
			}
			if _, err := key.Sign(rand.Reader, d, tt.hash); !errors.Is(err, ErrNotFound) {
				t.Errorf("Sign with destroyed key: %v, want ErrNotFound", err)
			}
		})
	}
}

// publicAttributes reads boolean attributes of ref's public key on a raw session.
func publicAttributes(t *testing.T, ref KeyRef) map[string]bool {
	t.Helper()
	names := map[uint]string{
		pkcs11.CKA_VERIFY: "VERIFY", pkcs11.CKA_ENCRYPT: "ENCRYPT", pkcs11.CKA_WRAP: "WRAP",
		pkcs11.CKA_VERIFY_RECOVER: "VERIFY_RECOVER", pkcs11.CKA_TOKEN: "TOKEN",
	}
	got := map[string]bool{}
	err := testTok.withRawSession(context.Background(), "test", func(sh pkcs11.SessionHandle) error {
		hs, err := testTok.findObjects(sh, append(refTemplate(ref), pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY)))
		if err != nil {
			return err
		}
		if len(hs) != 1 {
			return fmt.Errorf("%d public keys", len(hs))
		}
		var q []*pkcs11.Attribute
		var order []string
		for typ, name := range names {
			q = append(q, pkcs11.NewAttribute(typ, nil))
			order = append(order, name)
		}
		vals, err := testTok.p11.GetAttributeValue(sh, hs[0], q)
		if err != nil {
			return err
		}
		for i, v := range vals {
			got[order[i]] = len(v.Value) > 0 && v.Value[0] != 0
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestKeySpecValidate(t *testing.T) {
	tests := []struct {
		spec KeySpec
		ok   bool
	}{
		{KeySpec{Type: KeyRSA, Bits: 2048}, true},
		{KeySpec{Type: KeyRSA, Bits: 3072}, true},
		{KeySpec{Type: KeyRSA, Bits: 4096}, true},
		{KeySpec{Type: KeyRSA, Bits: 8192}, true}, // valid; not generated in tests (minutes on SoftHSM)
		{KeySpec{Type: KeyRSA, Bits: 1024}, false},
		{KeySpec{Type: KeyRSA, Bits: 2047}, false},
		{KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}, true},
		{KeySpec{Type: KeyECDSA, Curve: elliptic.P384()}, true},
		{KeySpec{Type: KeyECDSA, Curve: elliptic.P521()}, true},
		{KeySpec{Type: KeyECDSA, Curve: elliptic.P224()}, false},
		{KeySpec{Type: KeyECDSA}, false},
		{KeySpec{}, false},
		{KeySpec{Type: 99, Bits: 2048}, false},
	}
	for _, tt := range tests {
		t.Run(tt.spec.String(), func(t *testing.T) {
			err := tt.spec.Validate()
			if tt.ok != (err == nil) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrUnsupported) {
				t.Errorf("Validate() = %v, want ErrUnsupported", err)
			}
			if err != nil {
				// GenerateKeyPair refuses before touching the token.
				_, gErr := testTok.GenerateKeyPair(context.Background(), tt.spec, KeyRef{ID: []byte{1}, Label: "x"})
				if !errors.Is(gErr, ErrUnsupported) {
					t.Errorf("GenerateKeyPair = %v, want ErrUnsupported", gErr)
				}
			}
		})
	}
}

func TestCheckPublic(t *testing.T) {
	rsaKey := &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), 2047), E: 65537}
	ecKey := &ecdsa.PublicKey{Curve: elliptic.P384()}
	tests := []struct {
		name string
		spec KeySpec
		pub  crypto.PublicKey
		ok   bool
	}{
		{"rsa ok", KeySpec{Type: KeyRSA, Bits: 2048}, rsaKey, true},
		{"rsa short", KeySpec{Type: KeyRSA, Bits: 3072}, rsaKey, false},
		{"rsa exponent", KeySpec{Type: KeyRSA, Bits: 2048}, &rsa.PublicKey{N: rsaKey.N, E: 3}, false},
		{"rsa got ec", KeySpec{Type: KeyRSA, Bits: 2048}, ecKey, false},
		{"ec ok", KeySpec{Type: KeyECDSA, Curve: elliptic.P384()}, ecKey, true},
		{"ec curve", KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}, ecKey, false},
		{"ec got rsa", KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}, rsaKey, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkPublic(tt.spec, tt.pub); (err == nil) != tt.ok {
				t.Errorf("checkPublic = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestGenerateKeyPairBadInput(t *testing.T) {
	ctx := context.Background()
	p256 := KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	before, err := testTok.CountObjects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ctx  context.Context
		ref  KeyRef
		want error
	}{
		{"empty ID", ctx, KeyRef{Label: "x"}, nil},
		{"empty label", ctx, KeyRef{ID: []byte{1}}, nil},
		{"cancelled", cancelled, KeyRef{ID: []byte{1}, Label: "x"}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := testTok.GenerateKeyPair(tt.ctx, p256, tt.ref)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("GenerateKeyPair = %v, want %v", err, tt.want)
			}
		})
	}
	if n, _ := testTok.CountObjects(ctx); n != before {
		t.Errorf("objects %d -> %d", before, n)
	}
}

func TestSignBadDigest(t *testing.T) {
	ctx := context.Background()
	key, err := testTok.GenerateKeyPair(ctx, KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}, newRef(t, "digest"))
	if err != nil {
		t.Fatal(err)
	}
	destroyAtEnd(t, key)
	if _, err := key.Sign(rand.Reader, []byte("short"), crypto.SHA256); err == nil {
		t.Error("Sign accepted a 5-byte SHA-256 digest")
	}
	if _, err := key.Sign(rand.Reader, make([]byte, 32), nil); err == nil {
		t.Error("Sign accepted nil opts")
	}
}

func TestNewKeyID(t *testing.T) {
	ctx := context.Background()
	seen := map[string]bool{}
	for range 100 {
		id, err := testTok.NewKeyID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(id) != 16 {
			t.Fatalf("len(id) = %d", len(id))
		}
		if seen[string(id)] {
			t.Fatalf("duplicate id %x", id)
		}
		seen[string(id)] = true
	}
}

// TestConcurrentGenerate runs more generations than the pool has sessions
// (MaxSessions 4: 3 for work); the rest wait within PoolWaitTimeout.
func TestConcurrentGenerate(t *testing.T) {
	ctx := context.Background()
	const n = 16
	refs := make([]KeyRef, n)
	for i := range refs {
		refs[i] = newRef(t, "conc")
	}
	keys := make([]*Key, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			keys[i], errs[i] = testTok.GenerateKeyPair(ctx, KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}, refs[i])
		})
	}
	wg.Wait()
	ids := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Errorf("goroutine %d: %v", i, errs[i])
			continue
		}
		ids[string(keys[i].Ref().ID)] = true
		d := sha256.Sum256([]byte{byte(i)})
		sig, err := keys[i].Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil || !ecdsa.VerifyASN1(keys[i].Public().(*ecdsa.PublicKey), d[:], sig) {
			t.Errorf("key %d: sign/verify failed: %v", i, err)
		}
	}
	if len(ids) != n {
		t.Errorf("%d distinct IDs, want %d", len(ids), n)
	}
	got, err := testTok.ListKeys(ctx, "conc-")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Errorf("ListKeys(conc-) = %d keys, want %d", len(got), n)
	}
	for _, k := range keys {
		if k != nil {
			if err := k.Destroy(ctx); err != nil {
				t.Error(err)
			}
		}
	}
}
