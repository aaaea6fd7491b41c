package hsm

import (
	"bytes"
	"context"
	"crypto"
	"encoding/asn1"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
	"github.com/miekg/pkcs11"
	"github.com/rs/zerolog"
)

func TestSealedMLDSA(t *testing.T) {
	ctx := context.Background()
	if got := testTok.MLDSAStorage(); got != AltStorageSealed {
		t.Fatalf("SoftHSM 2.6.1 has no ML-DSA, MLDSAStorage = %q", got)
	}
	for _, set := range []MLDSA{MLDSA44, MLDSA65, MLDSA87} {
		t.Run(set.String(), func(t *testing.T) {
			b := SealBinding{RecordID: 42, Label: "csrd-42"}
			key, err := testTok.NewSealedMLDSA(ctx, set, b)
			if err != nil {
				t.Fatal(err)
			}
			if key.Storage() != AltStorageSealed || key.Set() != set {
				t.Fatalf("Storage %q Set %v", key.Storage(), key.Set())
			}
			var signer crypto.Signer = key
			msg := []byte("alternative signature over a CRI")
			sig, err := signer.Sign(nil, msg, crypto.Hash(0))
			if err != nil {
				t.Fatal(err)
			}
			if !verifyMLDSA(set, key.Public(), msg, sig) {
				t.Fatal("signature does not verify with circl")
			}
			if _, err := signer.Sign(nil, msg, crypto.SHA256); !errors.Is(err, ErrUnsupported) {
				t.Errorf("Sign with a hash: %v, want ErrUnsupported", err)
			}

			// The sealed seed opens to the same key, on this token, with this binding.
			blob := key.SealedSeed()
			again, err := testTok.OpenSealedMLDSA(ctx, set, blob, b)
			if err != nil {
				t.Fatal(err)
			}
			if !publicEqual(again.Public(), key.Public()) {
				t.Error("unsealed seed derives another key")
			}
			sig2, err := again.Sign(nil, msg, nil)
			if err != nil || !verifyMLDSA(set, key.Public(), msg, sig2) {
				t.Errorf("unsealed key does not sign: %v", err)
			}

			// Wiped keys refuse to sign; the seal is unaffected.
			key.Wipe()
			if _, err := key.Sign(nil, msg, nil); !errors.Is(err, ErrNotFound) {
				t.Errorf("Sign after Wipe: %v, want ErrNotFound", err)
			}
			if err := again.Destroy(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := again.Sign(nil, msg, nil); err == nil {
				t.Error("Sign after Destroy succeeded")
			}

			// The blob does not hold the seed in the clear.
			var sb sealedBlob
			if _, err := asn1.Unmarshal(blob, &sb); err != nil || len(sb.Ciphertext) != 32+16 || len(sb.IV) != 12 {
				t.Fatalf("blob layout: %v %+v", err, sb)
			}
		})
	}
}

func verifyMLDSA(set MLDSA, pub crypto.PublicKey, msg, sig []byte) bool {
	switch set {
	case MLDSA44:
		k, ok := pub.(*mldsa44.PublicKey)
		return ok && len(sig) == mldsa44.SignatureSize && mldsa44.Verify(k, msg, nil, sig)
	case MLDSA65:
		k, ok := pub.(*mldsa65.PublicKey)
		return ok && len(sig) == mldsa65.SignatureSize && mldsa65.Verify(k, msg, nil, sig)
	case MLDSA87:
		k, ok := pub.(*mldsa87.PublicKey)
		return ok && len(sig) == mldsa87.SignatureSize && mldsa87.Verify(k, msg, nil, sig)
	}
	return false
}

// TestSealTamper: a sealed seed opens only unchanged, with its own binding;
// everything else is a clean ErrSealed, never a panic or another class.
func TestSealTamper(t *testing.T) {
	ctx := context.Background()
	b := SealBinding{RecordID: 7, Label: "csrd-7", Algorithm: "ML-DSA-65"}
	secret := bytes.Repeat([]byte{0xa5}, 32)
	blob, err := testTok.seal(ctx, secret, b)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, secret) {
		t.Fatal("blob contains the plaintext")
	}
	if got, err := testTok.unseal(ctx, blob, b); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("unseal = %x, %v", got, err)
	}

	flip := func(i int) []byte {
		c := bytes.Clone(blob)
		c[i] ^= 0x01
		return c
	}
	var sb sealedBlob
	if _, err := asn1.Unmarshal(blob, &sb); err != nil {
		t.Fatal(err)
	}
	reenc := func(f func(*sealedBlob)) []byte {
		c := sb
		c.KEKID, c.IV, c.Ciphertext = bytes.Clone(sb.KEKID), bytes.Clone(sb.IV), bytes.Clone(sb.Ciphertext)
		f(&c)
		out, err := asn1.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	tests := []struct {
		name    string
		blob    []byte
		binding SealBinding
	}{
		{"last byte (tag)", flip(len(blob) - 1), b},
		{"ciphertext byte", reenc(func(c *sealedBlob) { c.Ciphertext[0] ^= 0x80 }), b},
		{"IV byte", reenc(func(c *sealedBlob) { c.IV[3] ^= 1 }), b},
		{"KEK id", reenc(func(c *sealedBlob) { c.KEKID[0] ^= 1 }), b},
		{"version", reenc(func(c *sealedBlob) { c.Version = 2 }), b},
		{"truncated ciphertext", reenc(func(c *sealedBlob) { c.Ciphertext = c.Ciphertext[:40] }), b},
		{"short IV", reenc(func(c *sealedBlob) { c.IV = c.IV[:8] }), b},
		{"truncated DER", blob[:len(blob)-5], b},
		{"trailing byte", append(bytes.Clone(blob), 0), b},
		{"empty", nil, b},
		{"not DER", []byte("seed"), b},
		{"other record id", blob, SealBinding{RecordID: 8, Label: b.Label, Algorithm: b.Algorithm}},
		{"other label", blob, SealBinding{RecordID: 7, Label: "csrd-8", Algorithm: b.Algorithm}},
		{"other algorithm", blob, SealBinding{RecordID: 7, Label: b.Label, Algorithm: "ML-DSA-87"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := testTok.unseal(ctx, tt.blob, tt.binding)
			if !errors.Is(err, ErrSealed) {
				t.Fatalf("unseal = %x, %v; want ErrSealed", got, err)
			}
			t.Log(err)
			if got != nil {
				t.Errorf("unseal returned %d bytes with the error", len(got))
			}
			if bytes.Contains([]byte(err.Error()), secret) {
				t.Error("error message contains the secret")
			}
		})
	}
	// The public entry point classifies the same way.
	if _, err := testTok.OpenSealedMLDSA(ctx, MLDSA44, blob, SealBinding{RecordID: 7, Label: "csrd-7"}); !errors.Is(err, ErrSealed) {
		t.Errorf("OpenSealedMLDSA of a -65 seed as -44: %v, want ErrSealed", err)
	}
}

// TestKEK: one KEK, created once even under concurrent first use, with the
// protective attributes, and reused from cache afterwards.
func TestKEK(t *testing.T) {
	ctx := context.Background()
	tok, err := Open(ctx, testConfig(otherLabel, testHSM.PIN), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	countKEKs := func() (ids [][]byte) {
		err := tok.withRawSession(ctx, "test", func(sh pkcs11.SessionHandle) error {
			hs, err := tok.findObjects(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, KEKLabel)})
			for _, h := range hs {
				got, err := tok.p11.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
				if err != nil {
					return err
				}
				ids = append(ids, got[0].Value)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	before := len(countKEKs())
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = tok.seal(ctx, []byte{byte(i)}, SealBinding{RecordID: int64(i + 1), Label: "l", Algorithm: "a"})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var kekIDs [][]byte
	err = tok.withRawSession(ctx, "test", func(sh pkcs11.SessionHandle) error {
		hs, err := tok.findObjects(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, KEKLabel)})
		if err != nil {
			return err
		}
		for _, h := range hs {
			got, err := tok.p11.GetAttributeValue(sh, h, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
				pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
				pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
				pkcs11.NewAttribute(pkcs11.CKA_NEVER_EXTRACTABLE, nil),
				pkcs11.NewAttribute(pkcs11.CKA_WRAP, nil),
				pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, nil),
				pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, nil),
			})
			if err != nil {
				return err
			}
			kekIDs = append(kekIDs, got[0].Value)
			if got[1].Value[0] != 1 || got[2].Value[0] != 0 || got[3].Value[0] != 1 || got[4].Value[0] != 0 || got[5].Value[0] != 0 || ulong(got[6].Value) != 32 {
				t.Errorf("KEK %x attributes: sensitive %v extractable %v never-extractable %v wrap %v unwrap %v len %d",
					got[0].Value, got[1].Value, got[2].Value, got[3].Value, got[4].Value, got[5].Value, ulong(got[6].Value))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case before == 0 && len(kekIDs) != 1:
		t.Errorf("8 concurrent first uses made %d KEKs, want 1", len(kekIDs))
	case before > 0 && len(kekIDs) != before:
		t.Errorf("KEKs %d -> %d although one existed", before, len(kekIDs))
	}
	if !slices.ContainsFunc(kekIDs, func(id []byte) bool { return bytes.Equal(id, tok.kek.cur) }) {
		t.Error("the cached KEK id is not on the token")
	}
	// Nobody can destroy it, not even csrd.
	first := bytes.Clone(tok.kek.cur)
	kekH := tok.kek.byID[string(first)]
	if err := tok.destroyHandles(ctx, "test", kekH); err == nil || !strings.Contains(err.Error(), "CKR_ACTION_PROHIBITED") {
		t.Fatalf("destroying the KEK: %v, want CKR_ACTION_PROHIBITED", err)
	}
	// Later seals use the cached handle and search nothing: with the cached
	// handle made stale, the next seal fails instead of finding the key...
	b := SealBinding{RecordID: 1, Label: "l", Algorithm: "a"}
	tok.kek.mu.Lock()
	tok.kek.byID[string(first)] = kekH + 1_000_000
	tok.kek.mu.Unlock()
	if _, err := tok.seal(ctx, []byte{1}, b); !errors.Is(err, ErrNotFound) {
		t.Fatalf("seal with a stale cached handle: %v, want ErrNotFound (the handle was not cached?)", err)
	}
	// ...and the one after that searches again and finds the same KEK.
	if _, err := tok.seal(ctx, []byte{1}, b); err != nil || !bytes.Equal(first, tok.kek.cur) {
		t.Errorf("seal after the stale handle was dropped: %v, KEK %x -> %x", err, first, tok.kek.cur)
	}
}

// TestSealOtherToken: another token's KEK cannot open the seal — neither
// when it has its own KEK, nor when it holds an AES key with the same label
// and CKA_ID.
func TestSealOtherToken(t *testing.T) {
	ctx := context.Background()
	b := SealBinding{RecordID: 9, Label: "csrd-9", Algorithm: "ML-DSA-44"}
	blob, err := testTok.seal(ctx, bytes.Repeat([]byte{1}, 32), b)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Open(ctx, testConfig(otherLabel, testHSM.PIN), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	// Its own KEK (created on first use) has another CKA_ID.
	if _, err := other.seal(ctx, bytes.Repeat([]byte{2}, 32), b); err != nil {
		t.Fatal(err)
	}
	if _, err := other.unseal(ctx, blob, b); !errors.Is(err, ErrSealed) {
		t.Fatalf("other token, own KEK: %v, want ErrSealed", err)
	}

	// A KEK that looks the same in every attribute but its value.
	var sb sealedBlob
	if _, err := asn1.Unmarshal(blob, &sb); err != nil {
		t.Fatal(err)
	}
	err = other.withRawSession(ctx, "test", func(sh pkcs11.SessionHandle) error {
		_, err := other.p11.GenerateKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)},
			append(kekTemplate(sb.KEKID), pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.unseal(ctx, blob, b); !errors.Is(err, ErrSealed) {
		t.Fatalf("other token, KEK with the same id: %v, want ErrSealed", err)
	}
	// And the original still opens.
	if _, err := testTok.unseal(ctx, blob, b); err != nil {
		t.Fatalf("own token: %v", err)
	}
}

// TestKEKRefusesExtractable: an AES key labelled like the KEK but
// extractable is never used to seal.
func TestKEKRefusesExtractable(t *testing.T) {
	ctx := context.Background()
	if err := testTok.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	var fake pkcs11.ObjectHandle
	err := testTok.withRawSession(ctx, "test", func(sh pkcs11.SessionHandle) error {
		var err error
		fake, err = testTok.p11.GenerateKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, KEKLabel),
			pkcs11.NewAttribute(pkcs11.CKA_ID, []byte{0}), // would sort first
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		})
		if err != nil {
			return err
		}
		// A fresh search, as a restarted process would make.
		id, _, err := testTok.smallestKEK(sh)
		if err == nil && bytes.Equal(id, []byte{0}) {
			t.Error("an extractable look-alike was chosen as the KEK")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = testTok.destroyHandles(ctx, "test", fake)
}
