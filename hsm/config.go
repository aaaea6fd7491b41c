package hsm

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// Defaults for the config layer to apply before Validate. hsm itself never
// fills in zero values: the session bounds must be chosen, not inherited from
// crypto11 (whose default is 1024 sessions and an unbounded wait).
const (
	// DefaultMaxSessions is generous: a token whose operations wait on
	// storage or the network (SoftHSM's file store, a network HSM) does
	// more per second with more of them in flight, and crypto11 caps the
	// pool at the token's own ulMaxRwSessionCount anyway.
	DefaultMaxSessions     = 64
	DefaultPoolWaitTimeout = 10 * time.Second

	// Health monitoring and reconnection (recover.go). Unlike the session
	// bounds these have safe defaults, applied by Open when zero.
	DefaultHealthInterval = 10 * time.Second
	DefaultReconnectMin   = 250 * time.Millisecond
	DefaultReconnectMax   = 30 * time.Second
)

// Config selects the PKCS#11 module and token and bounds how hsm uses it.
type Config struct {
	Module     string // path of the PKCS#11 library
	TokenLabel string // CKA_LABEL of the token (CK_TOKEN_INFO.label)
	PIN        string // user PIN; read from a file or credential, never argv; never logged

	// MaxSessions caps crypto11's session pool (one of them is crypto11's
	// long-lived login session), so at most MaxSessions-1 signing or generation
	// operations run at once. EdDSA, ML-DSA and sealing run on hsm's raw
	// handle with their own MaxSessions-1 sessions, and its maintenance
	// sessions (find, attributes, ping) add at most rawSessions more.
	MaxSessions int
	// PoolWaitTimeout bounds how long an operation waits for a free session.
	// PKCS#11 calls themselves cannot be cancelled; this is the bound on waiting.
	PoolWaitTimeout time.Duration

	// HealthInterval is how often the token is checked (token info, a
	// logged-in session) when nothing else notices a failure first; an
	// operation that sees a connection-loss code triggers a check at once.
	// 0 means DefaultHealthInterval.
	HealthInterval time.Duration
	// ReconnectMin and ReconnectMax bound the exponential backoff between
	// reconnection attempts after a session loss. 0 means the defaults.
	ReconnectMin, ReconnectMax time.Duration
	// RequireSignOnly refuses key types the token cannot restrict to
	// signing (its profile's usage has more than sign): CanGenerate answers
	// ErrNotSignOnly before anything is created. When false such keys are
	// made, and Key.Usage says what they may do; csrd still only signs.
	RequireSignOnly bool
	// KeysPerLogin bounds the keys the token may load between two logins
	// (generated, or first signed with) before csrd logs out and in again
	// (loads.go): 0 takes the
	// profile's bound (DefaultTPMKeysPerLogin for tpm2-pkcs11, none for
	// other modules), a negative value sets none.
	KeysPerLogin int

	// RefreshPIN, when set, reads the PIN again (from the PIN file) when the
	// token refuses the one hsm holds on a re-login: the operator changed
	// the token's PIN and the file. It is polled every ReconnectMin..Max and
	// a PIN is tried only once it differs from the refused one, so waiting
	// never counts towards locking the token. nil: stay down until restarted.
	RefreshPIN func() (string, error)
}

func (c *Config) setHealthDefaults() {
	if c.HealthInterval <= 0 {
		c.HealthInterval = DefaultHealthInterval
	}
	if c.ReconnectMin <= 0 {
		c.ReconnectMin = DefaultReconnectMin
	}
	if c.ReconnectMax < c.ReconnectMin {
		c.ReconnectMax = max(DefaultReconnectMax, c.ReconnectMin)
	}
}

// Validate reports the first problem with c. The PIN never appears in the error.
func (c Config) Validate() error {
	if err := c.validateShape(); err != nil {
		return err
	}
	if c.PIN == "" {
		return errors.New("hsm: config: PIN is empty")
	}
	if _, err := os.Stat(c.Module); err != nil {
		return fmt.Errorf("hsm: config: module: %w", err)
	}
	return nil
}

// validateShape checks what no change on the machine can fix — only an
// edit of the configuration: Start refuses these and waits out the rest
// (module file, token, PIN).
func (c Config) validateShape() error {
	switch {
	case c.Module == "":
		return errors.New("hsm: config: module path is empty")
	case c.TokenLabel == "":
		return errors.New("hsm: config: token label is empty")
	case len(c.TokenLabel) > 32:
		return fmt.Errorf("hsm: config: token label %q longer than 32 bytes", c.TokenLabel)
	case c.MaxSessions < 2:
		// crypto11 keeps one session for login, so fewer than 2 leaves none to work with.
		return fmt.Errorf("hsm: config: MaxSessions %d, need at least 2", c.MaxSessions)
	case c.PoolWaitTimeout <= 0:
		return fmt.Errorf("hsm: config: PoolWaitTimeout %v, need > 0", c.PoolWaitTimeout)
	}
	return nil
}
