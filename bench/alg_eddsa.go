package bench

// ed25519Alg is Ed25519 as far as this build of hsm supports it: not yet
// (hsm has no EdDSA key type), so the run reports it as not supported.
func ed25519Alg() alg { return alg{Name: "Ed25519", keyType: "ED25519"} }

// edSignInput is the pure-EdDSA signature csrd makes: CKM_EDDSA over the
// whole CertificationRequestInfo, about 300 bytes.
func edSignInput(msg string) (uint, []byte) {
	const ckmEdDSA = 0x1057 // PKCS#11 3.0 CKM_EDDSA
	b := make([]byte, 300)
	copy(b, msg)
	return ckmEdDSA, b
}
