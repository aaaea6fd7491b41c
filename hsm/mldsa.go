package hsm

import (
	"crypto"
	"fmt"

	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
)

// MLDSA is an ML-DSA (FIPS 204) parameter set, named by its number.
type MLDSA int

// The ML-DSA parameter sets. The zero value is invalid.
const (
	MLDSA44 MLDSA = 44
	MLDSA65 MLDSA = 65
	MLDSA87 MLDSA = 87
)

func (m MLDSA) String() string { return fmt.Sprintf("ML-DSA-%d", int(m)) }

// Validate returns an error wrapping ErrUnsupported for an unknown set.
func (m MLDSA) Validate() error {
	if _, ok := mldsaSchemes[m]; !ok {
		return classErr("key spec", ErrUnsupported, "ML-DSA parameter set %d", int(m))
	}
	return nil
}

// AltStorage says where an alternative (ML-DSA) private key lives.
type AltStorage string

const (
	// AltStorageToken: the key pair is a token object (PKCS#11 3.2 ML-DSA),
	// non-extractable like every other csrd key.
	AltStorageToken AltStorage = "token"
	// AltStorageSealed: the token has no ML-DSA; only the 32-byte seed is
	// kept, sealed by the token's KEK (see KEKLabel), and the key is derived
	// in process when it is needed.
	AltStorageSealed AltStorage = "sealed"
	// AltStorageNone: neither — the token has no ML-DSA and cannot seal
	// (no AES-GCM: tpm2-pkcs11, and p11-kit remoting, which does not
	// forward it). Hybrid requests are refused before anything is made.
	AltStorageNone AltStorage = ""
)

// PKCS#11 3.2 ML-DSA constants; miekg/pkcs11 v1.1.2 predates them.
const (
	ckkMLDSA           = 0x4a  // CKK_ML_DSA
	ckmMLDSAKeyPairGen = 0x1c  // CKM_ML_DSA_KEY_PAIR_GEN
	ckmMLDSA           = 0x1d  // CKM_ML_DSA (pure; no parameter = empty context, hedged)
	ckaParameterSet    = 0x61d // CKA_PARAMETER_SET
)

// mldsaSeedSize is ξ, the FIPS 204 key-generation seed (the same for every set).
const mldsaSeedSize = 32

// mldsaScheme binds one parameter set to circl and to its PKCS#11 number.
type mldsaScheme struct {
	ckp     uint // CKP_ML_DSA_44/65/87
	pubSize int
	sigSize int
	// fromSeed derives the key pair from ξ. The signer signs hedged pure
	// ML-DSA with an empty context; wipe zeroes the private key in memory.
	fromSeed    func(seed *[mldsaSeedSize]byte) (pub crypto.PublicKey, sign func([]byte) ([]byte, error), wipe func())
	parsePublic func([]byte) (crypto.PublicKey, error)
	verify      func(pub crypto.PublicKey, msg, sig []byte) bool
}

var mldsaSchemes = map[MLDSA]mldsaScheme{
	MLDSA44: {
		ckp: 1, pubSize: mldsa44.PublicKeySize, sigSize: mldsa44.SignatureSize,
		fromSeed: func(seed *[mldsaSeedSize]byte) (crypto.PublicKey, func([]byte) ([]byte, error), func()) {
			pk, sk := mldsa44.NewKeyFromSeed(seed)
			return pk, func(msg []byte) ([]byte, error) {
					sig := make([]byte, mldsa44.SignatureSize)
					return sig, mldsa44.SignTo(sk, msg, nil, true, sig)
				}, func() {
					*sk = mldsa44.PrivateKey{}
				}
		},
		parsePublic: func(b []byte) (crypto.PublicKey, error) {
			var pk mldsa44.PublicKey
			return &pk, pk.UnmarshalBinary(b)
		},
		verify: func(pub crypto.PublicKey, msg, sig []byte) bool {
			pk, ok := pub.(*mldsa44.PublicKey)
			return ok && mldsa44.Verify(pk, msg, nil, sig)
		},
	},
	MLDSA65: {
		ckp: 2, pubSize: mldsa65.PublicKeySize, sigSize: mldsa65.SignatureSize,
		fromSeed: func(seed *[mldsaSeedSize]byte) (crypto.PublicKey, func([]byte) ([]byte, error), func()) {
			pk, sk := mldsa65.NewKeyFromSeed(seed)
			return pk, func(msg []byte) ([]byte, error) {
					sig := make([]byte, mldsa65.SignatureSize)
					return sig, mldsa65.SignTo(sk, msg, nil, true, sig)
				}, func() {
					*sk = mldsa65.PrivateKey{}
				}
		},
		parsePublic: func(b []byte) (crypto.PublicKey, error) {
			var pk mldsa65.PublicKey
			return &pk, pk.UnmarshalBinary(b)
		},
		verify: func(pub crypto.PublicKey, msg, sig []byte) bool {
			pk, ok := pub.(*mldsa65.PublicKey)
			return ok && mldsa65.Verify(pk, msg, nil, sig)
		},
	},
	MLDSA87: {
		ckp: 3, pubSize: mldsa87.PublicKeySize, sigSize: mldsa87.SignatureSize,
		fromSeed: func(seed *[mldsaSeedSize]byte) (crypto.PublicKey, func([]byte) ([]byte, error), func()) {
			pk, sk := mldsa87.NewKeyFromSeed(seed)
			return pk, func(msg []byte) ([]byte, error) {
					sig := make([]byte, mldsa87.SignatureSize)
					return sig, mldsa87.SignTo(sk, msg, nil, true, sig)
				}, func() {
					*sk = mldsa87.PrivateKey{}
				}
		},
		parsePublic: func(b []byte) (crypto.PublicKey, error) {
			var pk mldsa87.PublicKey
			return &pk, pk.UnmarshalBinary(b)
		},
		verify: func(pub crypto.PublicKey, msg, sig []byte) bool {
			pk, ok := pub.(*mldsa87.PublicKey)
			return ok && mldsa87.Verify(pk, msg, nil, sig)
		},
	},
}

// MLDSAStorage says where GenerateMLDSA or NewSealedMLDSA would put an
// ML-DSA key on this token: in the token when it listed
// CKM_ML_DSA_KEY_PAIR_GEN and CKM_ML_DSA at Open, sealed when it can seal
// (its profile's Sealing: AES-GCM), else nowhere (AltStorageNone).
func (t *Token) MLDSAStorage() AltStorage {
	switch {
	case t.mechs[ckmMLDSAKeyPairGen] && t.mechs[ckmMLDSA]:
		return AltStorageToken
	case t.Profile() != nil && !t.Profile().Sealing:
		return AltStorageNone
	}
	return AltStorageSealed
}
