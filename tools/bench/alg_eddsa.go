package bench

import "github.com/csrd/csrd/hsm"

// ed25519Alg is Ed25519 (PKCS#11 3.0 CKK_EC_EDWARDS, pure EdDSA).
func ed25519Alg() alg {
	return alg{Name: "Ed25519", spec: hsm.KeySpec{Type: hsm.KeyEd25519}, supported: true, keyType: "ED25519"}
}

// edSignInput is the pure-EdDSA signature csrd makes: CKM_EDDSA over the
// whole CertificationRequestInfo, about 300 bytes for these requests.
func edSignInput(msg string) (uint, []byte) {
	const ckmEdDSA = 0x1057 // PKCS#11 3.0 CKM_EDDSA
	b := make([]byte, 300)
	copy(b, msg)
	return ckmEdDSA, b
}
