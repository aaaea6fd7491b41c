package hsm

import (
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/pkcs11"
)

// Profile is what csrd knows of its token. The first half is the token's
// own answers (C_GetTokenInfo, C_GetMechanismList and C_GetMechanismInfo);
// the second, per key type, is what PKCS#11 cannot say and trial rounds at
// the first connection showed (trial.go): which template shape the token
// accepts, which usage its keys really get, and how they sign. csrd makes
// keys by the profile: with the template shape that worked, signing the
// way that worked, and of sizes within the mechanism's range.
type Profile struct {
	Label, Manufacturer, Model, Serial string
	Hardware, Firmware                 string // "major.minor"
	// Library is the module's C_GetInfo: manufacturer, description and
	// version.
	Library string
	// KeysPerLogin bounds the keys csrd lets the token load between two
	// logins, for a module that keeps every key it generated or used
	// loaded in its device until C_Logout (loads.go); 0 for others.
	KeysPerLogin int
	// MaxSessions and MaxRwSessions are the token's session caps (0 when
	// it states none: CK_EFFECTIVELY_INFINITE or unavailable); crypto11
	// caps its pool at MaxRwSessions.
	MaxSessions, MaxRwSessions uint
	Mechanisms                 []Mechanism // by type
	Keys                       []KeyProfile
	// Sealing says whether the token can seal secrets (AES-256-GCM and
	// AES key generation): the sealed ML-DSA mode needs it.
	Sealing bool
}

// Mechanism is one entry of the token's mechanism list with its info.
type Mechanism struct {
	Type                   uint
	MinKeySize, MaxKeySize uint
	Flags                  uint // CKF_SIGN, CKF_GENERATE_KEY_PAIR, ...
}

// Name is the CKM_* name of m's type ("CKM_0x..." for one csrd does not know).
func (m Mechanism) Name() string { return mechName(m.Type) }

// FlagNames names m's CKF_* flags, e.g. ["sign", "verify"].
func (m Mechanism) FlagNames() []string {
	var out []string
	for _, f := range []struct {
		bit  uint
		name string
	}{
		{pkcs11.CKF_HW, "hw"}, {pkcs11.CKF_ENCRYPT, "encrypt"}, {pkcs11.CKF_DECRYPT, "decrypt"},
		{pkcs11.CKF_DIGEST, "digest"}, {pkcs11.CKF_SIGN, "sign"}, {pkcs11.CKF_SIGN_RECOVER, "sign-recover"},
		{pkcs11.CKF_VERIFY, "verify"}, {pkcs11.CKF_VERIFY_RECOVER, "verify-recover"},
		{pkcs11.CKF_GENERATE, "generate"}, {pkcs11.CKF_GENERATE_KEY_PAIR, "generate-key-pair"},
		{pkcs11.CKF_WRAP, "wrap"}, {pkcs11.CKF_UNWRAP, "unwrap"}, {pkcs11.CKF_DERIVE, "derive"},
	} {
		if m.Flags&f.bit != 0 {
			out = append(out, f.name)
		}
	}
	return out
}

// Template is a shape of key-pair template. Every shape keeps every
// protective attribute of the private key (CKA_TOKEN, CKA_PRIVATE,
// CKA_SENSITIVE, CKA_EXTRACTABLE false, and false for every usage but
// CKA_SIGN). Shapes differ in what they say about the public key's usage,
// which protects nothing, and — only for a token that refuses them — in
// whether both halves are locked (CKA_MODIFIABLE and CKA_COPYABLE false).
type Template int

const (
	// TemplateFull states every usage of both halves: the public key may
	// verify, and not encrypt, wrap or verify-recover.
	TemplateFull Template = iota + 1
	// TemplateNoPublicUsage leaves CKA_VERIFY and CKA_ENCRYPT out of the
	// public template: tpm2-pkcs11 maps both onto the TPM object's
	// attributes (CKA_VERIFY onto its decrypt flag) and refuses a public
	// template that disagrees with the private one (CKR_GENERAL_ERROR).
	// The token derives the public key's usage from the private key's.
	TemplateNoPublicUsage
)

// TemplateUnlocked, added to a shape, leaves CKA_MODIFIABLE and
// CKA_COPYABLE out of both halves. Trials try it only after the token
// refused the same shape locked, and the profile says so (Omitted).
const TemplateUnlocked Template = 4

// templates is the order trials try shapes in: the fullest first, every
// locked shape before any unlocked one.
var templates = []Template{TemplateFull, TemplateNoPublicUsage, TemplateFull | TemplateUnlocked, TemplateNoPublicUsage | TemplateUnlocked}

// TemplateShapes returns the shapes in the order trials try them; each is
// greater than the one before.
func TemplateShapes() []Template { return slices.Clone(templates) }

// PublicUsage reports whether the shape states the public key's usage.
func (t Template) PublicUsage() bool { return t&^TemplateUnlocked != TemplateNoPublicUsage }

// Locked reports whether the shape sets CKA_MODIFIABLE and CKA_COPYABLE false.
func (t Template) Locked() bool { return t&TemplateUnlocked == 0 }

func (t Template) String() string {
	var s string
	switch t &^ TemplateUnlocked {
	case TemplateFull:
		s = "full"
	case TemplateNoPublicUsage:
		s = "no public usage (CKA_VERIFY, CKA_ENCRYPT left out of the public template)"
	default:
		return fmt.Sprintf("Template(%d)", int(t))
	}
	if !t.Locked() {
		s += ", unlocked (CKA_MODIFIABLE, CKA_COPYABLE left out)"
	}
	return s
}

// omitted names the attributes a shape leaves out.
func (t Template) omitted() []string {
	var out []string
	if !t.PublicUsage() {
		out = append(out, "CKA_VERIFY (public)", "CKA_ENCRYPT (public)")
	}
	if !t.Locked() {
		out = append(out, "CKA_MODIFIABLE", "CKA_COPYABLE")
	}
	return out
}

// Usage is what a private key may do, as the token reports it after
// generation.
type Usage struct {
	Sign, Decrypt, Unwrap, Derive, SignRecover bool
}

// SignOnly reports whether the key can do nothing but sign.
func (u Usage) SignOnly() bool {
	return u.Sign && !u.Decrypt && !u.Unwrap && !u.Derive && !u.SignRecover
}

// String lists the usages, e.g. "sign" or "sign, decrypt".
func (u Usage) String() string {
	var s []string
	for _, x := range []struct {
		on   bool
		name string
	}{{u.Sign, "sign"}, {u.Decrypt, "decrypt"}, {u.Unwrap, "unwrap"}, {u.Derive, "derive"}, {u.SignRecover, "sign-recover"}} {
		if x.on {
			s = append(s, x.name)
		}
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// Signing says how a key type signs on the token.
type Signing int

const (
	// SignDigest: the token signs a digest hsm computed (CKM_ECDSA,
	// CKM_RSA_PKCS over a DigestInfo, CKM_EDDSA over the message).
	SignDigest Signing = iota + 1
	// SignHashInToken: the token hashes and signs the message itself
	// (CKM_SHA256_RSA_PKCS and its siblings). tpm2-pkcs11 implements
	// CKM_RSA_PKCS through the TPM's RSA decryption, which a sign-only key
	// refuses; its hash-and-sign mechanisms use TPM2_Sign.
	SignHashInToken
)

func (s Signing) String() string {
	switch s {
	case SignDigest:
		return "digest signed in the token"
	case SignHashInToken:
		return "message hashed and signed in the token"
	}
	return "none"
}

// KeyProfile is what the profile says about one key type.
type KeyProfile struct {
	Type KeyType
	// Mechanism lists the generation mechanism and its key sizes; nil
	// when the token does not list it (then nothing below was tried).
	Mechanism *Mechanism
	// Trial is the spec the trial generated, e.g. RSA-2048.
	Trial string
	// Template is the shape that generated a protected key, Omitted the
	// attributes it leaves out, Usage what the key got, Signing how it
	// signed. Zero when Err is set.
	Template Template
	Omitted  []string
	Usage    Usage
	Signing  Signing
	// Modifiable is CKA_MODIFIABLE as read back, and ModifiableEnforced
	// whether the token then refused a C_SetAttributeValue on the key (only
	// tried when Modifiable is false).
	Modifiable, ModifiableEnforced bool
	// Refusals are the template shapes the token refused and how.
	Refusals []string
	// Sizes are the other sizes of the type the trials tried with the
	// chosen shape (each Weierstrass curve: the TPM's module fails some
	// that its mechanism's range admits), and what became of them.
	Sizes []SizeTrial
	// Err says why csrd cannot make this key type on the token.
	Err error
}

// SizeTrial is one size's trial: Err is nil when it generated and signed
// the way the type's first trial did.
type SizeTrial struct {
	Spec string
	Err  error
}

// sizeErr returns why spec cannot be made although its type can.
func (k KeyProfile) sizeErr(spec KeySpec) error {
	for _, s := range k.Sizes {
		if s.Spec == spec.String() {
			return s.Err
		}
	}
	return nil
}

// Usable reports whether csrd can make keys of this type on the token.
func (k KeyProfile) Usable() bool { return k.Mechanism != nil && k.Err == nil && k.Template != 0 }

// Key returns the profile of key type typ (zero KeyProfile if csrd has none).
func (p *Profile) Key(typ KeyType) KeyProfile {
	if p == nil {
		return KeyProfile{Type: typ}
	}
	for _, k := range p.Keys {
		if k.Type == typ {
			return k
		}
	}
	return KeyProfile{Type: typ}
}

// Mechanism returns the token's entry for mechanism m.
func (p *Profile) Mechanism(m uint) (Mechanism, bool) {
	i, ok := slices.BinarySearchFunc(p.Mechanisms, m, func(x Mechanism, m uint) int { return int(x.Type) - int(m) })
	if !ok {
		return Mechanism{}, false
	}
	return p.Mechanisms[i], true
}

// Profile returns the token's profile, as read and tried at its first
// connection; nil while a Started Token has never connected.
func (t *Token) Profile() *Profile { return t.profile.Load() }

// readProfile fills the token's own answers into a new Profile.
func (t *Token) readProfile() (*Profile, error) {
	const op = "read token profile"
	info, err := t.p11.GetTokenInfo(t.slot)
	if err != nil {
		return nil, wrap(op, err)
	}
	p := &Profile{
		Label: info.Label, Manufacturer: blankTrim(info.ManufacturerID), Model: blankTrim(info.Model),
		Serial:      info.SerialNumber,
		Hardware:    fmt.Sprintf("%d.%d", info.HardwareVersion.Major, info.HardwareVersion.Minor),
		Firmware:    fmt.Sprintf("%d.%d", info.FirmwareVersion.Major, info.FirmwareVersion.Minor),
		MaxSessions: sessionCap(info.MaxSessionCount), MaxRwSessions: sessionCap(info.MaxRwSessionCount),
	}
	lib, err := t.p11.GetInfo()
	if err != nil {
		return nil, wrap(op, err)
	}
	p.Library, p.KeysPerLogin = libraryOf(lib), keysPerLogin(lib)
	ms, err := t.p11.GetMechanismList(t.slot)
	if err != nil {
		return nil, wrap(op, err)
	}
	for _, m := range ms {
		mi, err := t.p11.GetMechanismInfo(t.slot, []*pkcs11.Mechanism{m})
		if err != nil {
			return nil, wrap(op, err)
		}
		p.Mechanisms = append(p.Mechanisms, Mechanism{Type: m.Mechanism, MinKeySize: mi.MinKeySize, MaxKeySize: mi.MaxKeySize, Flags: mi.Flags})
	}
	slices.SortFunc(p.Mechanisms, func(a, b Mechanism) int { return int(a.Type) - int(b.Type) })
	_, gcm := p.Mechanism(pkcs11.CKM_AES_GCM)
	_, gen := p.Mechanism(pkcs11.CKM_AES_KEY_GEN)
	p.Sealing = gcm && gen
	return p, nil
}

// blankTrim trims the padding of a CK_TOKEN_INFO text field (blanks, and
// the NULs some modules pad with).
func blankTrim(s string) string { return strings.Trim(s, " \x00") }

// sessionCap turns a CK_TOKEN_INFO session count into a cap, 0 for none.
func sessionCap(n uint) uint {
	if n == pkcs11.CK_EFFECTIVELY_INFINITE || n == pkcs11.CK_UNAVAILABLE_INFORMATION || n >= 1<<31 {
		return 0
	}
	return n
}

// mechNames names the mechanisms a profile is read for.
var mechNames = map[uint]string{
	pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN: "CKM_RSA_PKCS_KEY_PAIR_GEN",
	pkcs11.CKM_RSA_PKCS:              "CKM_RSA_PKCS",
	pkcs11.CKM_RSA_X_509:             "CKM_RSA_X_509",
	pkcs11.CKM_RSA_PKCS_PSS:          "CKM_RSA_PKCS_PSS",
	pkcs11.CKM_RSA_PKCS_OAEP:         "CKM_RSA_PKCS_OAEP",
	pkcs11.CKM_SHA1_RSA_PKCS:         "CKM_SHA1_RSA_PKCS",
	pkcs11.CKM_SHA256_RSA_PKCS:       "CKM_SHA256_RSA_PKCS",
	pkcs11.CKM_SHA384_RSA_PKCS:       "CKM_SHA384_RSA_PKCS",
	pkcs11.CKM_SHA512_RSA_PKCS:       "CKM_SHA512_RSA_PKCS",
	pkcs11.CKM_SHA256_RSA_PKCS_PSS:   "CKM_SHA256_RSA_PKCS_PSS",
	pkcs11.CKM_SHA384_RSA_PKCS_PSS:   "CKM_SHA384_RSA_PKCS_PSS",
	pkcs11.CKM_SHA512_RSA_PKCS_PSS:   "CKM_SHA512_RSA_PKCS_PSS",
	pkcs11.CKM_EC_KEY_PAIR_GEN:       "CKM_EC_KEY_PAIR_GEN",
	pkcs11.CKM_ECDSA:                 "CKM_ECDSA",
	pkcs11.CKM_ECDSA_SHA1:            "CKM_ECDSA_SHA1",
	pkcs11.CKM_ECDSA_SHA256:          "CKM_ECDSA_SHA256",
	pkcs11.CKM_ECDSA_SHA384:          "CKM_ECDSA_SHA384",
	pkcs11.CKM_ECDSA_SHA512:          "CKM_ECDSA_SHA512",
	ckmECEdwardsKeyPairGen:           "CKM_EC_EDWARDS_KEY_PAIR_GEN",
	ckmEdDSA:                         "CKM_EDDSA",
	ckmMLDSAKeyPairGen:               "CKM_ML_DSA_KEY_PAIR_GEN",
	ckmMLDSA:                         "CKM_ML_DSA",
	pkcs11.CKM_AES_KEY_GEN:           "CKM_AES_KEY_GEN",
	pkcs11.CKM_AES_GCM:               "CKM_AES_GCM",
	pkcs11.CKM_AES_CBC:               "CKM_AES_CBC",
	pkcs11.CKM_AES_CBC_PAD:           "CKM_AES_CBC_PAD",
	pkcs11.CKM_AES_ECB:               "CKM_AES_ECB",
	pkcs11.CKM_AES_CTR:               "CKM_AES_CTR",
	pkcs11.CKM_AES_KEY_WRAP:          "CKM_AES_KEY_WRAP",
	pkcs11.CKM_SHA_1:                 "CKM_SHA_1",
	pkcs11.CKM_SHA256:                "CKM_SHA256",
	pkcs11.CKM_SHA384:                "CKM_SHA384",
	pkcs11.CKM_SHA512:                "CKM_SHA512",
}

func mechName(m uint) string {
	if n, ok := mechNames[m]; ok {
		return n
	}
	return fmt.Sprintf("CKM_0x%X", m)
}
