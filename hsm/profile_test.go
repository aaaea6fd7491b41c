package hsm

import (
	"context"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
)

// TestProfile: each token of the matrix gets the profile its module
// deserves, learned from its own answers and the trials, and the trials
// leave nothing behind.
func TestProfile(t *testing.T) {
	forEachKind(t, func(t *testing.T, k kind) {
		p := k.tok.Profile()
		if p == nil {
			t.Fatal("no profile")
		}
		t.Logf("%s %s firmware %s, %d mechanisms, max RW sessions %d, sealing %v", p.Manufacturer, p.Model, p.Firmware, len(p.Mechanisms), p.MaxRwSessions, p.Sealing)
		for _, kp := range p.Keys {
			t.Logf("%v: usable %v trial %s template %v usage %q signing %v modifiable %v/%v refusals %q sizes %v err %v",
				kp.Type, kp.Usable(), kp.Trial, kp.Template, kp.Usage, kp.Signing, kp.Modifiable, kp.ModifiableEnforced, kp.Refusals, kp.Sizes, kp.Err)
		}
		if p.Label != k.label || p.Model == "" || len(p.Mechanisms) == 0 {
			t.Errorf("token answers missing: %+v", p)
		}
		if _, ok := p.Mechanism(pkcs11.CKM_EC_KEY_PAIR_GEN); !ok {
			t.Error("no CKM_EC_KEY_PAIR_GEN in the mechanism list")
		}
		type expect struct {
			usable  bool
			shape   Template
			signing Signing
		}
		full := expect{true, TemplateFull, SignDigest}
		want := map[KeyType]expect{KeyRSA: full, KeyECDSA: full, KeyEd25519: full, KeyEd448: full}
		sealing := true
		switch k.name {
		case "p11kit":
			// p11-kit's RPC (0.24) forwards only mechanisms whose
			// parameters it can marshal: no EdDSA, no AES-GCM.
			want[KeyEd25519], want[KeyEd448], sealing = expect{}, expect{}, false
		case "tpm":
			want[KeyRSA] = expect{true, TemplateNoPublicUsage, SignHashInToken}
			want[KeyECDSA] = expect{true, TemplateNoPublicUsage, SignDigest}
			want[KeyEd25519], want[KeyEd448], sealing = expect{}, expect{}, false
		}
		for typ, w := range want {
			kp := p.Key(typ)
			if kp.Usable() != w.usable || kp.Template != w.shape || kp.Signing != w.signing {
				t.Errorf("%v: usable %v template %v signing %v, want %v %v %v", typ, kp.Usable(), kp.Template, kp.Signing, w.usable, w.shape, w.signing)
			}
			if w.usable && !kp.Usage.SignOnly() {
				t.Errorf("%v: usage %q, want sign only", typ, kp.Usage)
			}
		}
		if p.Sealing != sealing {
			t.Errorf("sealing %v, want %v", p.Sealing, sealing)
		}
		checkProfileJSON(t, p)
		refs, err := k.tok.ListKeys(context.Background(), TrialLabel)
		if err != nil {
			t.Fatal(err)
		}
		if len(refs) != 0 {
			t.Errorf("trial keys left on the token: %v", refs)
		}
	})
}

// checkProfileJSON: the profile as csrd records it says, per key type,
// what the profile says, errors as text.
func checkProfileJSON(t *testing.T, p *Profile) {
	t.Helper()
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Label      string
		Serial     string
		Mechanisms []struct{ Name string }
		Keys       []struct {
			Type, Error, Template, Usage string
			Offered                      bool
			SignOnly                     bool `json:"sign_only"`
		}
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Label != p.Label || doc.Serial != p.Serial || len(doc.Mechanisms) != len(p.Mechanisms) || len(doc.Keys) != len(p.Keys) {
		t.Fatalf("recorded profile %s", raw)
	}
	for i, k := range doc.Keys {
		kp := p.Keys[i]
		if k.Type != kp.Type.String() || k.Offered != kp.Usable() || (k.Error != "") != (kp.Err != nil) ||
			(kp.Usable() && (k.Template != kp.Template.String() || k.Usage != kp.Usage.String() || !k.SignOnly)) {
			t.Errorf("recorded key %+v, profile %+v", k, kp)
		}
	}
}

// TestRequireSignOnly: a token whose keys of a type would get more usage
// than signing is refused for that type while RequireSignOnly holds —
// naming the token and the usage, before anything touches it — and
// allowed without it.
func TestRequireSignOnly(t *testing.T) {
	p := *testTok.Profile()
	p.Keys = append([]KeyProfile(nil), p.Keys...)
	for i := range p.Keys {
		if p.Keys[i].Type == KeyRSA {
			p.Keys[i].Usage.Decrypt = true
		}
	}
	for _, require := range []bool{true, false} {
		tok := &Token{label: "csrd-decrypting", cfg: Config{RequireSignOnly: require}}
		tok.profile.Store(&p)
		err := tok.CanGenerate(KeySpec{Type: KeyRSA, Bits: 2048})
		switch {
		case require && (!errors.Is(err, ErrNotSignOnly) || !errors.Is(err, ErrUnsupported) ||
			!strings.Contains(err.Error(), `"csrd-decrypting"`) || !strings.Contains(err.Error(), "sign, decrypt")):
			t.Errorf("RequireSignOnly: %v, want ErrNotSignOnly naming the token and the usage", err)
		case !require && err != nil:
			t.Errorf("without RequireSignOnly: %v", err)
		}
		if err := tok.CanGenerate(KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}); err != nil {
			t.Errorf("ECDSA, sign-only on this token: %v", err)
		}
		if require {
			// Refused before the token is touched: this Token has none.
			if _, err := tok.GenerateKeyPair(context.Background(), KeySpec{Type: KeyRSA, Bits: 2048}, KeyRef{ID: []byte{1}, Label: "x"}); !errors.Is(err, ErrNotSignOnly) {
				t.Errorf("GenerateKeyPair: %v, want ErrNotSignOnly", err)
			}
		}
	}
}

// TestModifiableEnforcement pins what the profile's trial finds when a key
// is made with CKA_MODIFIABLE false: SoftHSM then refuses
// C_SetAttributeValue on it; tpm2-pkcs11 reads the attribute back false but
// lets the key be changed.
func TestModifiableEnforcement(t *testing.T) {
	forEachKind(t, func(t *testing.T, k kind) {
		ctx := context.Background()
		ref := refOn(t, k.tok, "modifiable")
		tm, err := k.tok.Templates(KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}, ref)
		if err != nil {
			t.Fatal(err)
		}
		tm.Private = append(tm.Private, pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false))
		// The raw generation below loads a key as Generate does: it takes
		// its place in the token's keys-per-login count like one, on a
		// fresh connection on the TPM, where earlier tests' refused
		// templates leave objects loaded that no logout frees.
		if k.name == "tpm" {
			k.tok.gate.mu.Lock()
			k.tok.gate.loads.full = true
			k.tok.gate.mu.Unlock()
			if err := k.tok.relogin(); err != nil {
				t.Fatal(err)
			}
		}
		if err := k.tok.beginLoading(ctx, "test", ref.ID); err != nil {
			t.Fatal(err)
		}
		defer k.tok.end()
		err = k.tok.withRawSession(ctx, "test", func(sh pkcs11.SessionHandle) error {
			pubH, privH, err := k.tok.p11.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(tm.Mechanism, nil)}, tm.Public, tm.Private)
			if err != nil {
				return err
			}
			modifiable, enforced := k.tok.trialModifiable(sh, privH)
			t.Logf("CKA_MODIFIABLE read back %v, enforced %v", modifiable, enforced)
			if want := k.name != "tpm"; modifiable || enforced != want {
				t.Errorf("modifiable %v enforced %v, want false %v", modifiable, enforced, want)
			}
			_ = k.tok.p11.DestroyObject(sh, privH)
			return k.tok.p11.DestroyObject(sh, pubH)
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
