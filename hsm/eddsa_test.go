package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/cloudflare/circl/sign/ed448"
	"github.com/miekg/pkcs11"
)

func TestGenerateEdDSA(t *testing.T) {
	ctx := context.Background()
	for _, typ := range []KeyType{KeyEd25519, KeyEd448} {
		t.Run(typ.String(), func(t *testing.T) {
			if err := testTok.CanGenerate(KeySpec{Type: typ}); err != nil {
				t.Fatalf("CanGenerate: %v (SoftHSM 2.6.1 lists EC-EDWARDS-KEY-PAIR-GEN and EDDSA)", err)
			}
			ref := newRef(t, "ed")
			before, err := testTok.CountObjects(ctx)
			if err != nil {
				t.Fatal(err)
			}
			key, err := testTok.GenerateKeyPair(ctx, KeySpec{Type: typ}, ref)
			if err != nil {
				t.Fatal(err)
			}
			destroyed := false
			defer func() {
				if !destroyed {
					_ = key.Destroy(ctx)
				}
			}()
			var signer crypto.Signer = key // the contract csr relies on
			msg := []byte("csrd pure EdDSA over the whole message " + typ.String())

			sig, err := signer.Sign(rand.Reader, msg, crypto.Hash(0))
			if err != nil {
				t.Fatal(err)
			}
			switch pub := signer.Public().(type) {
			case ed25519.PublicKey:
				if typ != KeyEd25519 || len(pub) != ed25519.PublicKeySize {
					t.Fatalf("public key ed25519 of %d bytes for %v", len(pub), typ)
				}
				if !ed25519.Verify(pub, msg, sig) {
					t.Error("Ed25519 signature does not verify with crypto/ed25519")
				}
			case ed448.PublicKey:
				if typ != KeyEd448 || len(pub) != ed448.PublicKeySize {
					t.Fatalf("public key ed448 of %d bytes for %v", len(pub), typ)
				}
				if !ed448.Verify(pub, msg, sig, "") {
					t.Error("Ed448 signature does not verify with circl (pure, empty context)")
				}
			default:
				t.Fatalf("public key %T", pub)
			}
			// ed25519.Options without context is pure Ed25519 too.
			if typ == KeyEd25519 {
				if _, err := key.Sign(rand.Reader, msg, &ed25519.Options{}); err != nil {
					t.Errorf("Sign with &ed25519.Options{}: %v", err)
				}
			}

			attrs, err := testTok.KeyAttributes(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			want := Attributes{
				Sensitive: true, Extractable: false, NeverExtractable: true, AlwaysSensitive: true,
				Sign: true, Token: true, Private: true, KeyType: ckkECEdwards, Label: ref.Label, ID: ref.ID,
			}
			if fmt.Sprint(attrs) != fmt.Sprint(want) {
				t.Errorf("KeyAttributes:\n got %+v\nwant %+v", attrs, want)
			}
			if n, _ := testTok.CountObjects(ctx); n != before+2 {
				t.Errorf("objects %d -> %d, want +2", before, n)
			}

			// FindKey (crypto11 cannot) returns a working Key on the same objects.
			found, err := testTok.FindKey(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(publicBytes(found.Public()), publicBytes(key.Public())) {
				t.Error("FindKey returned another public key")
			}
			sig2, err := found.Sign(rand.Reader, msg, crypto.Hash(0))
			if err != nil || !bytes.Equal(sig, sig2) { // EdDSA is deterministic
				t.Errorf("found key signs differently: %v", err)
			}

			if err := key.Destroy(ctx); err != nil {
				t.Fatal(err)
			}
			destroyed = true
			if n, _ := testTok.CountObjects(ctx); n != before {
				t.Errorf("objects after Destroy %d, want %d", n, before)
			}
			if _, err := key.Sign(rand.Reader, msg, crypto.Hash(0)); !errors.Is(err, ErrNotFound) {
				t.Errorf("Sign with destroyed key: %v, want ErrNotFound", err)
			}
		})
	}
}

func publicBytes(pub crypto.PublicKey) []byte {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return k
	case ed448.PublicKey:
		return k
	}
	return nil
}

func TestEdDSARefusesPrehashAndContext(t *testing.T) {
	ctx := context.Background()
	ed, err := testTok.GenerateKeyPair(ctx, KeySpec{Type: KeyEd25519}, newRef(t, "edopts"))
	if err != nil {
		t.Fatal(err)
	}
	destroyAtEnd(t, ed)
	e4, err := testTok.GenerateKeyPair(ctx, KeySpec{Type: KeyEd448, Bits: 448}, newRef(t, "edopts"))
	if err != nil {
		t.Fatal(err)
	}
	destroyAtEnd(t, e4)
	d := sha256.Sum256([]byte("x"))
	tests := []struct {
		name string
		key  *Key
		opts crypto.SignerOpts
	}{
		{"Ed25519 SHA-256 digest", ed, crypto.SHA256},
		{"Ed25519ph", ed, &ed25519.Options{Hash: crypto.SHA512}},
		{"Ed25519ctx", ed, &ed25519.Options{Context: "ctx"}},
		{"Ed448 context", e4, ed448.SignerOptions{Scheme: ed448.ED448, Context: "ctx"}},
		{"Ed448ph", e4, ed448.SignerOptions{Scheme: ed448.ED448Ph}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.key.Sign(rand.Reader, d[:], tt.opts); !errors.Is(err, ErrUnsupported) {
				t.Errorf("Sign = %v, want ErrUnsupported", err)
			}
		})
	}
}

func TestEdSpecValidate(t *testing.T) {
	for _, tt := range []struct {
		spec KeySpec
		ok   bool
	}{
		{KeySpec{Type: KeyEd25519}, true},
		{KeySpec{Type: KeyEd25519, Bits: 255}, true},
		{KeySpec{Type: KeyEd25519, Bits: 256}, false},
		{KeySpec{Type: KeyEd448}, true},
		{KeySpec{Type: KeyEd448, Bits: 448}, true},
		{KeySpec{Type: KeyEd448, Bits: 456}, false},
	} {
		t.Run(fmt.Sprintf("%v-%d", tt.spec.Type, tt.spec.Bits), func(t *testing.T) {
			if err := tt.spec.Validate(); (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrUnsupported)) {
				t.Errorf("Validate = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestEdPoint(t *testing.T) {
	raw := bytes.Repeat([]byte{7}, 32)
	der := append([]byte{0x04, 0x20}, raw...)
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"raw (OASIS text)", raw, true},
		{"DER OCTET STRING (SoftHSM)", der, true},
		{"DER with trailing byte", append(bytes.Clone(der), 0), false},
		{"DER of wrong length", append([]byte{0x04, 0x1f}, raw[:31]...), false},
		{"short raw", raw[:31], false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := edPoint(tt.in, 32)
			if (err == nil) != tt.ok {
				t.Fatalf("edPoint = %x, %v; want ok=%v", got, err, tt.ok)
			}
			if tt.ok && !bytes.Equal(got, raw) {
				t.Errorf("edPoint = %x", got)
			}
		})
	}
}

func TestEdParamsFromECParams(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want KeyType
	}{
		{"Ed25519 OID", []byte{0x06, 0x03, 0x2b, 0x65, 0x70}, KeyEd25519},
		{"Ed448 OID", []byte{0x06, 0x03, 0x2b, 0x65, 0x71}, KeyEd448},
		{"edwards25519 name", append([]byte{0x13, 12}, "edwards25519"...), KeyEd25519},
		{"edwards448 name", append([]byte{0x13, 10}, "edwards448"...), KeyEd448},
		{"X25519 OID", []byte{0x06, 0x03, 0x2b, 0x65, 0x6e}, 0},
		{"P-256 OID", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}, 0},
		{"garbage", []byte{0xff}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := edParamsFromECParams(tt.in)
			if ok != (tt.want != 0) || p.typ != tt.want {
				t.Errorf("= %v, %v; want %v", p.typ, ok, tt.want)
			}
		})
	}
}

// TestEdDSAKeyType checks the object is a real PKCS#11 3.0 Edwards key,
// not something crypto11 made up.
func TestEdDSAKeyType(t *testing.T) {
	ctx := context.Background()
	ref := newRef(t, "edraw")
	key, err := testTok.GenerateKeyPair(ctx, KeySpec{Type: KeyEd25519}, ref)
	if err != nil {
		t.Fatal(err)
	}
	destroyAtEnd(t, key)
	var ckk uint
	err = testTok.withRawSession(ctx, "test", func(sh pkcs11.SessionHandle) error {
		got, err := testTok.p11.GetAttributeValue(sh, key.ed.priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil)})
		if err == nil {
			ckk = ulong(got[0].Value)
		}
		return err
	})
	if err != nil || ckk != ckkECEdwards {
		t.Errorf("private key CKA_KEY_TYPE = 0x%x, %v; want CKK_EC_EDWARDS", ckk, err)
	}
}

// TestConcurrentEdDSA runs more Edwards generations and signatures than the
// raw handle has work sessions (MaxSessions 4: 3); the rest queue, and
// readiness pings, on their own sessions, keep answering meanwhile.
func TestConcurrentEdDSA(t *testing.T) {
	ctx := context.Background()
	const n = 12
	refs := make([]KeyRef, n)
	for i := range refs {
		refs[i] = newRef(t, "edconc")
	}
	keys := make([]*Key, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			typ := KeyEd25519
			if i%2 == 1 {
				typ = KeyEd448
			}
			keys[i], errs[i] = testTok.GenerateKeyPair(ctx, KeySpec{Type: typ}, refs[i])
			if errs[i] == nil {
				_, errs[i] = keys[i].Sign(rand.Reader, []byte{byte(i)}, crypto.Hash(0))
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			if err := testTok.Ping(ctx); err != nil {
				t.Errorf("Ping during EdDSA work: %v", err)
			}
		}
	})
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("goroutine %d: %v", i, err)
		}
	}
	for _, k := range keys {
		if k != nil {
			if err := k.Destroy(ctx); err != nil {
				t.Error(err)
			}
		}
	}
}
