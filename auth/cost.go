package auth

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// MinBcryptCost is the cheapest bcrypt cost csrd accepts without a
// warning: bcrypt's own default, OWASP's minimum.
const MinBcryptCost = bcrypt.DefaultCost

// hashCost is the algorithm and cost parameters of a stored password hash:
// what one verification against it costs.
type hashCost struct {
	bcrypt int // bcrypt cost; 0 for argon2id
	argon  Argon2Params
}

// costOf reads the cost parameters of a hash checkHash accepted.
func costOf(hash string) (hashCost, error) {
	if isBcrypt(hash) {
		c, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return hashCost{}, fmt.Errorf("%w: bcrypt: %v", ErrBadHash, err)
		}
		return hashCost{bcrypt: c}, nil
	}
	p, _, _, err := parseArgon2(hash)
	if err != nil {
		return hashCost{}, err
	}
	return hashCost{argon: p}, nil
}

func (c hashCost) String() string {
	if c.bcrypt > 0 {
		return fmt.Sprintf("bcrypt cost %d", c.bcrypt)
	}
	return fmt.Sprintf("argon2id m=%d,t=%d,p=%d", c.argon.Memory, c.argon.Time, c.argon.Threads)
}

// weak reports whether the hash is cheaper than csrd's default: argon2id
// with less memory or fewer passes than DefaultArgon2, bcrypt below
// MinBcryptCost. Such a hash answers faster than the others (its user's
// existence shows in response times) and resists offline guessing less.
func (c hashCost) weak() bool {
	if c.bcrypt > 0 {
		return c.bcrypt < MinBcryptCost
	}
	return c.argon.Memory < DefaultArgon2.Memory || c.argon.Time < DefaultArgon2.Time
}

// dummy returns a hash with these cost parameters that no password
// matches (random salt and digest), so verifying an unknown name against it
// costs what verifying a real user of this cost does.
func (c hashCost) dummy() string {
	if c.bcrypt > 0 {
		// $2b$NN$ + 22 salt characters + 31 digest characters, in
		// bcrypt's base64 alphabet.
		const alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
		b := make([]byte, 53)
		_, _ = rand.Read(b)
		for i := range b {
			b[i] = alphabet[int(b[i])%len(alphabet)]
		}
		return fmt.Sprintf("$2b$%02d$%s", c.bcrypt, b)
	}
	salt := make([]byte, argonSaltLen)
	key := make([]byte, argonKeyLen)
	_, _ = rand.Read(salt)
	_, _ = rand.Read(key)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		c.argon.Memory, c.argon.Time, c.argon.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// measure times one verification at cost c (a wrong password against its
// dummy).
func measure(c hashCost) time.Duration {
	h := c.dummy()
	start := time.Now()
	_, _ = VerifyPassword(h, "csrd cost probe")
	return time.Since(start)
}

// costliest returns the costliest of the file's password hash parameters,
// with a dummy hash of that cost, and the users whose hash is weak. When the
// file mixes parameters, their cost is measured (once per parameter set,
// remembered in seen): bcrypt and argon2id costs have no common unit, and
// argon2id's wall time depends on its lanes and the machine's cores.
func costliest(f *File, seen map[hashCost]time.Duration) (dummy string, top hashCost, weak []string) {
	var costs []hashCost
	distinct := map[hashCost]bool{}
	for _, u := range f.Users {
		c, err := costOf(u.PasswordHash)
		if err != nil {
			continue // Validate refuses such a file
		}
		if c.weak() {
			weak = append(weak, u.Name+" ("+c.String()+")")
		}
		if !distinct[c] {
			distinct[c] = true
			costs = append(costs, c)
		}
	}
	switch len(costs) {
	case 0:
		return "", hashCost{}, weak
	case 1:
		return costs[0].dummy(), costs[0], weak
	}
	top = costs[0]
	for _, c := range costs {
		if _, ok := seen[c]; !ok {
			seen[c] = measure(c)
		}
		if seen[c] > seen[top] {
			top = c
		}
	}
	return top.dummy(), top, weak
}
