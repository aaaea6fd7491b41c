package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// API tokens look like "csrd_<id>_<secret>": id is 6 random bytes in hex and
// names the entry (so a lookup needs no scan and the audit log can say which
// token was used without holding it), secret is 32 random bytes, base64url.
// The file stores only the id and the SHA-256 of the whole token.
const (
	tokenPrefix    = "csrd_"
	tokenIDLen     = 6
	tokenSecretLen = 32
)

// NewToken returns a fresh API token and the id and hash the auth file keeps.
// The token itself is shown once and never stored.
func NewToken() (token, id, sha string, err error) {
	var idb [tokenIDLen]byte
	var sec [tokenSecretLen]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", "", "", fmt.Errorf("auth: token: %w", err)
	}
	if _, err := rand.Read(sec[:]); err != nil {
		return "", "", "", fmt.Errorf("auth: token: %w", err)
	}
	id = hex.EncodeToString(idb[:])
	token = tokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(sec[:])
	return token, id, tokenHash(token), nil
}

// TokenID returns the public id part of a well-formed token ("" otherwise),
// which names a token in logs without revealing it.
func TokenID(token string) string { return tokenID(token) }

// tokenID extracts the id of a well-formed token ("" otherwise).
func tokenID(token string) string {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return ""
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 2*tokenIDLen || len(secret) != base64.RawURLEncoding.EncodedLen(tokenSecretLen) {
		return ""
	}
	if _, err := hex.DecodeString(id); err != nil {
		return ""
	}
	return id
}

func tokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// tokenMatches compares the presented token with the stored hash in
// constant time.
func tokenMatches(token, storedHex string) bool {
	want, err := hex.DecodeString(storedHex)
	if err != nil {
		return false
	}
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], want) == 1
}
