package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Argon2Params are argon2id cost parameters (RFC 9106 §4).
type Argon2Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
}

// DefaultArgon2 is RFC 9106's second recommended option (64 MiB, 3 passes),
// about 0.1 s on one core of a current server: slow for an attacker with the
// file, bearable because verified passwords are cached (see doc.go).
var DefaultArgon2 = Argon2Params{Memory: 64 * 1024, Time: 3, Threads: 4}

const (
	argonSaltLen = 16
	argonKeyLen  = 32
	// Bounds on parameters read from a file, so a corrupt or hostile entry
	// cannot make one verification allocate gigabytes or spin for minutes.
	maxArgonMemory = 1 << 20 // 1 GiB in KiB
	maxArgonTime   = 64
)

// ErrBadHash: a stored password hash is neither argon2id nor bcrypt, or is
// malformed.
var ErrBadHash = errors.New("auth: unrecognised password hash")

// HashPassword returns password as an argon2id hash in the PHC string format
// ($argon2id$v=19$m=65536,t=3,p=4$salt$hash), which also records the costs.
func HashPassword(password string, p Argon2Params) (string, error) {
	if p.Memory < 8*uint32(p.Threads) || p.Time < 1 || p.Threads < 1 || p.Memory > maxArgonMemory || p.Time > maxArgonTime {
		return "", fmt.Errorf("auth: argon2 parameters m=%d t=%d p=%d out of range", p.Memory, p.Time, p.Threads)
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// checkHash reports whether hash is a form VerifyPassword understands.
func checkHash(hash string) error {
	if isBcrypt(hash) {
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return fmt.Errorf("%w: bcrypt: %v", ErrBadHash, err)
		}
		return nil
	}
	_, _, _, err := parseArgon2(hash)
	return err
}

// VerifyPassword reports whether password matches hash (argon2id PHC or
// bcrypt $2a$/$2b$/$2y$). The comparison is constant-time.
func VerifyPassword(hash, password string) (bool, error) {
	if isBcrypt(hash) {
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
			return false, nil
		}
		return false, fmt.Errorf("%w: bcrypt: %v", ErrBadHash, err)
	}
	p, salt, want, err := parseArgon2(hash)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

func isBcrypt(h string) bool {
	return strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$")
}

// parseArgon2 splits "$argon2id$v=19$m=..,t=..,p=..$salt$key".
func parseArgon2(hash string) (p Argon2Params, salt, key []byte, err error) {
	f := strings.Split(hash, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" {
		return p, nil, nil, fmt.Errorf("%w: want $argon2id$... or bcrypt", ErrBadHash)
	}
	if f[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, fmt.Errorf("%w: argon2 version %q, want v=%d", ErrBadHash, f[2], argon2.Version)
	}
	var m, t, th uint64
	for _, kv := range strings.Split(f[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, perr := strconv.ParseUint(v, 10, 32)
		if !ok || perr != nil {
			return p, nil, nil, fmt.Errorf("%w: argon2 parameter %q", ErrBadHash, kv)
		}
		switch k {
		case "m":
			m = n
		case "t":
			t = n
		case "p":
			th = n
		default:
			return p, nil, nil, fmt.Errorf("%w: argon2 parameter %q", ErrBadHash, kv)
		}
	}
	if m == 0 || t == 0 || th == 0 || th > 255 || m > maxArgonMemory || t > maxArgonTime {
		return p, nil, nil, fmt.Errorf("%w: argon2 parameters %q out of range", ErrBadHash, f[3])
	}
	b64 := base64.RawStdEncoding
	if salt, err = b64.DecodeString(f[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, fmt.Errorf("%w: argon2 salt", ErrBadHash)
	}
	if key, err = b64.DecodeString(f[5]); err != nil || len(key) < 16 {
		return p, nil, nil, fmt.Errorf("%w: argon2 key", ErrBadHash)
	}
	return Argon2Params{Memory: uint32(m), Time: uint32(t), Threads: uint8(th)}, salt, key, nil
}
