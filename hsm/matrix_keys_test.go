package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"testing"

	"github.com/cloudflare/circl/sign/ed448"
)

// TestKeysOnEveryToken: every key type csrd offers is born in each token
// of the matrix, private, sensitive, never extractable and sign-only, signs
// what csr signs (the whole message: hsm.Key is a crypto.MessageSigner, so
// a token that hashes in the token gets it), is found again and leaves
// nothing behind; what a token cannot make is refused before anything is
// created, saying why.
func TestKeysOnEveryToken(t *testing.T) {
	specs := []KeySpec{
		{Type: KeyRSA, Bits: 2048}, {Type: KeyRSA, Bits: 3072}, {Type: KeyRSA, Bits: 4096},
		{Type: KeyECDSA, Curve: elliptic.P256()}, {Type: KeyECDSA, Curve: elliptic.P384()}, {Type: KeyECDSA, Curve: elliptic.P521()},
		{Type: KeyEd25519}, {Type: KeyEd448},
	}
	refused := map[string]map[string]bool{
		"p11kit": {"Ed25519": true, "Ed448": true},
		"tpm":    {"RSA-4096": true, "ECDSA-P-521": true, "Ed25519": true, "Ed448": true},
	}
	forEachKind(t, func(t *testing.T, k kind) {
		for _, spec := range specs {
			t.Run(spec.String(), func(t *testing.T) {
				if testing.Short() && spec.Type == KeyRSA && spec.Bits > 2048 {
					t.Skip("-short: large RSA keys take seconds")
				}
				testKeyOn(t, k.tok, spec, refused[k.name][spec.String()])
			})
		}
	})
}

func testKeyOn(t *testing.T, tok *Token, spec KeySpec, refuse bool) {
	ctx := context.Background()
	ref := refOn(t, tok, "matrix")
	before, err := tok.CountObjects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cErr := tok.CanGenerate(spec)
	key, gErr := tok.GenerateKeyPair(ctx, spec, ref)
	if refuse {
		var he *Error
		if !errors.Is(cErr, ErrUnsupported) || !errors.Is(gErr, ErrUnsupported) || !errors.As(gErr, &he) || he.Token != tok.Label() {
			t.Fatalf("CanGenerate %v, GenerateKeyPair %v; want ErrUnsupported naming the token", cErr, gErr)
		}
		t.Log(gErr)
		if after, _ := tok.CountObjects(ctx); after != before {
			t.Errorf("a refused generation changed the object count from %d to %d", before, after)
		}
		return
	}
	if cErr != nil || gErr != nil {
		t.Fatalf("CanGenerate %v, GenerateKeyPair %v", cErr, gErr)
	}
	defer func() { _ = key.Destroy(ctx) }()
	a, err := tok.KeyAttributes(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Token || !a.Private || !a.Sensitive || a.Extractable || !a.NeverExtractable || !a.AlwaysSensitive ||
		!a.Sign || a.Decrypt || a.Unwrap || a.Derive {
		t.Errorf("attributes %+v", a)
	}
	if !key.Usage().SignOnly() {
		t.Errorf("Usage %q", key.Usage())
	}
	signAndVerify(t, key)
	found, err := tok.FindKey(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	signAndVerify(t, found)
	if err := key.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if after, _ := tok.CountObjects(ctx); after != before {
		t.Errorf("%d objects after Destroy, %d before", after, before)
	}
}

// signAndVerify signs a message as csr does and verifies it.
func signAndVerify(t *testing.T, key *Key) {
	t.Helper()
	msg := []byte("csrd matrix " + key.Ref().Label)
	var opts crypto.SignerOpts = crypto.SHA256
	switch pub := key.Public().(type) {
	case *ecdsa.PublicKey:
		opts = map[int]crypto.Hash{256: crypto.SHA256, 384: crypto.SHA384, 521: crypto.SHA512}[pub.Curve.Params().BitSize]
	case ed25519.PublicKey, ed448.PublicKey:
		opts = crypto.Hash(0)
	}
	sig, err := key.SignMessage(nil, msg, opts)
	if err != nil {
		t.Fatalf("SignMessage: %v", err)
	}
	d := msg
	if h := opts.HashFunc(); h != 0 {
		d = digest(h, msg)
	}
	ok := false
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(pub, opts.HashFunc(), d, sig) == nil
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(pub, d, sig)
	case ed25519.PublicKey:
		ok = ed25519.Verify(pub, msg, sig)
	case ed448.PublicKey:
		ok = ed448.Verify(pub, msg, sig, "")
	}
	if !ok {
		t.Errorf("%T signature does not verify", key.Public())
	}
}
