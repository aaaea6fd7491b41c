package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is everything csrd needs to run. Field names follow the YAML keys.
type Config struct {
	Listen   string `yaml:"listen"`
	BasePath string `yaml:"base_path"`
	HSM      HSM    `yaml:"hsm"`
	// Database is the SQLite database file, or a postgres:// (or
	// postgresql://) URL without password for a PostgreSQL database that
	// several csrd nodes share.
	Database string `yaml:"database"`
	// DatabasePasswordFile holds the PostgreSQL password (never in the URL,
	// never on the command line). A systemd credential database-password
	// wins over it; with neither, PGPASSFILE or ~/.pgpass is read.
	DatabasePasswordFile string `yaml:"database_password_file"`
	LogLevel             string `yaml:"log_level"`
	TLS                  TLS    `yaml:"tls"`
	Limits               Limits `yaml:"limits"`
	// PolicyFile is the YAML policy file (templates, enrollment patterns,
	// system-wide settings); empty means the built-in default policy.
	PolicyFile string `yaml:"policy_file"`
	Auth       Auth   `yaml:"auth"`
	// Cluster names this node among the csrd nodes that share a
	// PostgreSQL database.
	Cluster Cluster `yaml:"cluster"`
	// TrustedProxies are the reverse proxies (IPs or CIDRs) whose
	// X-Forwarded-For csrd believes for the client address that throttling
	// and the audit log use. Empty: the TCP peer, the header ignored.
	TrustedProxies []string `yaml:"trusted_proxies"`

	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// after SIGTERM before the HSM sessions and database are closed.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// RequestTimeout bounds one request; key generation on a busy token is
	// the slow part, so it must allow for RSA-4096/8192. An enrollment the
	// CA has not finished by then is answered PENDING (see cas.go).
	RequestTimeout time.Duration `yaml:"request_timeout"`

	// CAs are the certificate authorities Enrollment/CSR enrolls with.
	CAs []CA `yaml:"cas"`
}

// TLS configures HTTPS. With cert_file and key_file set csrd serves TLS 1.2+
// and may listen on any address; without them it serves plain HTTP, on
// loopback only.
type TLS struct {
	// CertFile holds the server certificate chain (PEM, leaf first).
	CertFile string `yaml:"cert_file"`
	// KeyFile is a PEM private key file, or a PKCS#11 URI
	// ("pkcs11:object=tls-server;type=private") naming a key pair in csrd's
	// token, so the TLS key never leaves the HSM either. Its label should
	// not start with "csrd-", the prefix of the keys csrd makes;
	// reconciliation never destroys the object it names either way.
	KeyFile string `yaml:"key_file"`
	// ClientCAFile, when set, makes csrd request and verify client
	// certificates (mTLS) against these CAs (PEM). A client without a valid
	// certificate cannot complete the handshake.
	ClientCAFile string `yaml:"client_ca_file"`
}

// Enabled reports whether TLS is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// Limits bound the work csrd accepts at once.
type Limits struct {
	// MaxGenerations caps key generations in flight; 0 means the HSM's
	// working sessions (hsm.max_sessions - 1: crypto11 keeps one for login).
	MaxGenerations int `yaml:"max_generations"`
	// GenerationWait bounds how long a request waits for a generation slot
	// before it is answered 503 with Retry-After.
	GenerationWait time.Duration `yaml:"generation_wait"`
	// MaxGenerationsPerIdentity caps the generations one authenticated
	// identity may have in flight or waiting for a slot; one more is
	// answered 429 with Retry-After at once. 0 (the default) means no cap:
	// a single service account may use every slot.
	MaxGenerationsPerIdentity int `yaml:"max_generations_per_identity"`
}

// HSM selects the PKCS#11 module and token.
type HSM struct {
	Module     string `yaml:"module"`
	TokenLabel string `yaml:"token_label"`
	// PINFile holds the user PIN. When systemd passes credentials
	// ($CREDENTIALS_DIRECTORY) and it contains hsm-pin, that file wins.
	// Every PIN file must be a regular file no group or other may access
	// (chmod 600), except one in $CREDENTIALS_DIRECTORY.
	PINFile string `yaml:"pin_file"`
	// MaxSessions caps concurrent PKCS#11 sessions (and so concurrent key
	// generations). Tokens have a per-application session limit.
	MaxSessions int `yaml:"max_sessions"`
	// SessionWaitTimeout bounds how long a request waits for a free session
	// before it is answered 503; crypto11 calls cannot be cancelled, so this
	// is the only bound on waiting for the token.
	SessionWaitTimeout time.Duration `yaml:"session_wait_timeout"`
	// HealthInterval is how often the token is checked when no request
	// notices a failure first; after a failed check csrd reconnects with
	// backoff and /readyz reports not ready meanwhile.
	HealthInterval time.Duration `yaml:"health_interval"`
	// ReconnectMaxBackoff caps the exponential backoff between reconnection
	// attempts (starting at 250ms), i.e. how long csrd may take to notice a
	// token that has come back.
	ReconnectMaxBackoff time.Duration `yaml:"reconnect_max_backoff"`
	// RequireSignOnly (default true) refuses a Generate on a token that
	// cannot restrict a key of the requested type to signing (its profile,
	// see docs/tokens.md), before anything is created. With false such
	// keys are made; the key views say what they may do, and csrd still
	// only signs with them.
	RequireSignOnly bool `yaml:"require_sign_only"`
	// KeysPerLogin bounds the keys a token may load between two logins
	// before csrd quiesces it and logs out and in again, for modules that
	// keep every key they generated or used loaded in the device until
	// logout (tpm2-pkcs11: docs/tokens.md). 0 (default) takes the token
	// profile's bound (6 for tpm2-pkcs11, none for other modules); -1 sets
	// none.
	KeysPerLogin int `yaml:"keys_per_login"`
	// Tokens, when set instead of TokenLabel, is a pool: new keys go to the
	// least busy healthy token, each key stays on the one that made it.
	Tokens []Token `yaml:"tokens"`
}

// Token is one token of a pool (hsm.tokens).
type Token struct {
	TokenLabel string `yaml:"token_label"`
	// PINFile defaults to hsm.pin_file (and its systemd credential).
	PINFile string `yaml:"pin_file"`
	// RequireSignOnly overrides hsm.require_sign_only for this token.
	RequireSignOnly *bool `yaml:"require_sign_only"`
	// KeysPerLogin overrides hsm.keys_per_login for this token (nil:
	// hsm's).
	KeysPerLogin *int `yaml:"keys_per_login"`
}

// Cluster configures this node of a fleet (several csrd sharing one
// PostgreSQL database; a SQLite appliance is a fleet of one).
type Cluster struct {
	// NodeName is this node's name in the registry; default: the host name.
	// Each node needs its own.
	NodeName string `yaml:"node_name"`
	// AdvertiseURL is how the other nodes reach this one (its listener:
	// https://host:port, or http://127.0.0.1:port on one machine). Default:
	// the scheme and address of listen.
	AdvertiseURL string `yaml:"advertise_url"`
	// SecretFile holds a secret every node shares; it authenticates the
	// requests one node forwards to another. Without it a node forwards
	// nothing and accepts nothing forwarded.
	SecretFile string `yaml:"secret_file"`
	// CAFile verifies the other nodes' TLS certificates when advertise URLs
	// are https (default: the system's CAs).
	CAFile string `yaml:"ca_file"`
	// HeartbeatInterval is how often the node renews its registry row (and
	// its leases); NodeTimeout how old a heartbeat may be before the node
	// counts as gone and its unfinished work may be finished by others.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	NodeTimeout       time.Duration `yaml:"node_timeout"`
}

// Auth selects how callers are authenticated (see package auth).
type Auth struct {
	// Mode is "file" (the default: every API call needs an identity from
	// File) or "none" (no authentication; only allowed when listen is a
	// loopback address, for development).
	Mode string `yaml:"mode"`
	// File is the auth file: users, API tokens, mTLS clients and grants.
	File string `yaml:"file"`
	// FailureLimit failed attempts from one address lock it out for
	// Lockout, doubling with every further failure (up to an hour).
	// Attempts still being verified count, and a success forgives only the
	// failures of the identity that succeeded (see auth.Throttle).
	// 0 disables throttling.
	FailureLimit int           `yaml:"failure_limit"`
	Lockout      time.Duration `yaml:"lockout"`
	// VerifyQueue is how many password verifications may wait for one of
	// the two verification slots; beyond it a Basic login is answered 503
	// at once instead of queueing without bound.
	VerifyQueue int `yaml:"verify_queue"`
	// VerifyPerSource is how many password verifications one address may
	// have running or waiting; beyond it the login is answered 429 at once,
	// so one address cannot hold every slot.
	VerifyPerSource int `yaml:"verify_per_source"`
}

// maxVerifyQueue bounds auth.verify_queue: each waiting verification is a
// held request, and at ~0.1-0.3 s a verification a longer queue only waits
// into client timeouts.
const maxVerifyQueue = 4096

// Auth modes.
const (
	AuthFile = "file"
	AuthNone = "none"
)

// Defaults are the values used for keys the file leaves out.
func Defaults() Config {
	return Config{
		Listen:          "127.0.0.1:8080",
		BasePath:        "/KeyfactorAPI",
		Database:        "/var/lib/csrd/csrd.db",
		LogLevel:        "info",
		ShutdownTimeout: 30 * time.Second,
		RequestTimeout:  5 * time.Minute,
		Auth: Auth{Mode: AuthFile, File: "/etc/csrd/auth.yaml", FailureLimit: 5, Lockout: time.Minute,
			VerifyQueue: 16, VerifyPerSource: 1},
		HSM: HSM{
			Module:             "/usr/lib/softhsm/libsofthsm2.so",
			PINFile:            "/etc/csrd/hsm-pin",
			MaxSessions:        64, // hsm.DefaultMaxSessions (why: see there)
			SessionWaitTimeout: 30 * time.Second,
			HealthInterval:     10 * time.Second,
			// Short enough that a replugged token serves again quickly,
			// long enough not to hammer a network HSM that is rebooting.
			ReconnectMaxBackoff: 30 * time.Second,
			RequireSignOnly:     true,
		},
		Limits:  Limits{GenerationWait: 5 * time.Second},
		Cluster: Cluster{HeartbeatInterval: 5 * time.Second, NodeTimeout: 20 * time.Second},
	}
}

// Load reads the YAML file at path over the defaults. Unknown keys are an
// error: a misspelt key silently ignored is how an appliance ends up on the
// wrong token.
func Load(path string) (Config, error) {
	cfg := Defaults()
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty file (io.EOF) means "all defaults".
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return cfg, fmt.Errorf("config: %s: %w", path, err)
	}
	return cfg, nil
}

// Validate checks the whole configuration and reports every problem at once.
func (c *Config) Validate() error {
	var p problems
	c.validateServer(&p)
	c.validateAuth(&p)
	c.validateHSM(&p)
	c.validateLimits(&p)
	c.Cluster.validate(&p, c.TLS.Enabled())
	p = append(p, c.validateCAs()...)
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("config: %w", errors.Join(p...))
}

// problems collects what Validate finds, so that an operator fixes a
// configuration in one pass rather than one error per start.
type problems []error

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }

// validateServer checks what csrd serves on: address, TLS, base path,
// database, logging and the trusted proxies.
func (c *Config) validateServer(p *problems) {
	if host, _, err := net.SplitHostPort(c.Listen); err != nil {
		p.add("listen %q: %v", c.Listen, err)
	} else if !c.TLS.Enabled() && !isLoopback(host) {
		// Requests carry credentials and return CSRs: plain HTTP must not
		// leave the machine.
		p.add("listen %q: plain HTTP is only allowed on a loopback address; set tls.cert_file and tls.key_file", c.Listen)
	}
	switch {
	case c.TLS.Enabled() && (c.TLS.CertFile == "" || c.TLS.KeyFile == ""):
		p.add("tls: cert_file and key_file must be set together")
	case !c.TLS.Enabled() && c.TLS.ClientCAFile != "":
		p.add("tls.client_ca_file: needs tls.cert_file and tls.key_file (mTLS is TLS)")
	}
	if !strings.HasPrefix(c.BasePath, "/") || strings.HasSuffix(c.BasePath, "/") && c.BasePath != "/" {
		p.add("base_path %q: must start with / and not end with /", c.BasePath)
	}
	switch {
	case c.Database == "" || c.Database == ":memory:" || strings.HasPrefix(c.Database, "file::memory:"):
		p.add("database %q: must be a file path or a postgres:// URL", c.Database)
	case c.DatabasePasswordFile != "" && !c.Postgres():
		p.add("database_password_file: only for a PostgreSQL database (database: postgres://…)")
	}
	switch c.LogLevel {
	case "trace", "debug", "info", "warn", "error":
	default:
		p.add("log_level %q: must be one of trace, debug, info, warn, error", c.LogLevel)
	}
	if _, err := c.TrustedProxyNets(); err != nil {
		p.add("%v", err)
	}
}

// validateAuth checks how callers are authenticated.
func (c *Config) validateAuth(p *problems) {
	switch c.Auth.Mode {
	case AuthFile:
		if c.Auth.File == "" {
			p.add("auth.file: required when auth.mode is file")
		}
	case AuthNone:
		// Without authentication anyone who reaches the port can make keys
		// and delete records: only ever on the machine itself. (A listen
		// address that does not parse is reported by validateServer.)
		if host, _, err := net.SplitHostPort(c.Listen); err == nil && !isLoopback(host) {
			p.add("auth.mode none: only allowed when listen is a loopback address, not %q", c.Listen)
		}
	default:
		p.add("auth.mode %q: must be file or none", c.Auth.Mode)
	}
	if c.Auth.FailureLimit < 0 {
		p.add("auth.failure_limit: must not be negative")
	}
	if c.Auth.FailureLimit > 0 && c.Auth.Lockout <= 0 {
		p.add("auth.lockout: must be positive when auth.failure_limit is set")
	}
	if c.Auth.VerifyQueue < 1 || c.Auth.VerifyQueue > maxVerifyQueue {
		p.add("auth.verify_queue %d: must be between 1 and %d", c.Auth.VerifyQueue, maxVerifyQueue)
	}
	if c.Auth.VerifyPerSource < 1 || c.Auth.VerifyPerSource > maxVerifyQueue {
		p.add("auth.verify_per_source %d: must be between 1 and %d", c.Auth.VerifyPerSource, maxVerifyQueue)
	}
}

// validateHSM checks the module, the token or pool, the PIN source and the
// session and reconnection bounds.
func (c *Config) validateHSM(p *problems) {
	h := &c.HSM
	if h.Module == "" {
		p.add("hsm.module: required")
	}
	switch {
	case len(h.Tokens) > 0 && h.TokenLabel != "":
		p.add("hsm.token_label and hsm.tokens: set one (a single token) or the other (a pool), not both")
	case len(h.Tokens) == 0 && h.TokenLabel == "":
		p.add("hsm.token_label: required (or hsm.tokens for a pool)")
	}
	needDefaultPIN := h.validatePool(p)
	if needDefaultPIN && h.PINFile == "" && os.Getenv(credentialsEnv) == "" {
		p.add("hsm.pin_file: required (or a systemd credential hsm-pin)")
	}
	// crypto11 keeps one long-lived session of its own besides the pool,
	// so fewer than 2 cannot work.
	if h.MaxSessions < 2 || h.MaxSessions > 1024 {
		p.add("hsm.max_sessions %d: must be between 2 and 1024", h.MaxSessions)
	}
	for _, t := range h.TokenList() {
		if n := h.LoginKeys(t); n < -1 {
			p.add("hsm.keys_per_login %d (token %q): must be -1 (no bound), 0 (the token profile's) or positive", n, t.TokenLabel)
		}
	}
	if h.SessionWaitTimeout <= 0 {
		p.add("hsm.session_wait_timeout: must be positive")
	}
	if h.HealthInterval <= 0 {
		p.add("hsm.health_interval: must be positive")
	}
	if h.ReconnectMaxBackoff < 250*time.Millisecond {
		p.add("hsm.reconnect_max_backoff %v: must be at least 250ms", h.ReconnectMaxBackoff)
	}
}

// validatePool checks hsm.tokens and reports whether some token reads its
// PIN from hsm.pin_file (the single token always does).
func (h *HSM) validatePool(p *problems) (needDefaultPIN bool) {
	seen := map[string]bool{}
	needDefaultPIN = len(h.Tokens) == 0
	for i, t := range h.Tokens {
		switch {
		case t.TokenLabel == "":
			p.add("hsm.tokens[%d].token_label: required", i)
		case len(t.TokenLabel) > 32:
			p.add("hsm.tokens[%d].token_label %q: longer than 32 bytes", i, t.TokenLabel)
		case seen[t.TokenLabel]:
			p.add("hsm.tokens[%d].token_label %q: listed twice", i, t.TokenLabel)
		}
		seen[t.TokenLabel] = true
		needDefaultPIN = needDefaultPIN || t.PINFile == ""
	}
	return needDefaultPIN
}

// validateLimits checks the bounds on work in flight and on time.
func (c *Config) validateLimits(p *problems) {
	if c.Limits.MaxGenerations < 0 {
		p.add("limits.max_generations %d: must be 0 (= hsm.max_sessions - 1) or more", c.Limits.MaxGenerations)
	}
	if c.Limits.GenerationWait <= 0 {
		p.add("limits.generation_wait: must be positive")
	}
	switch {
	case c.Limits.MaxGenerationsPerIdentity < 0:
		p.add("limits.max_generations_per_identity %d: must be 0 (no cap) or more", c.Limits.MaxGenerationsPerIdentity)
	case c.Limits.MaxGenerationsPerIdentity > 0 && c.Auth.Mode == AuthNone:
		// Every caller is the one anonymous identity: the cap would only
		// be a smaller limits.max_generations.
		p.add("limits.max_generations_per_identity: needs auth.mode file (with auth.mode none every caller is one identity; lower limits.max_generations instead)")
	}
	if c.ShutdownTimeout <= 0 {
		p.add("shutdown_timeout: must be positive")
	}
	if c.RequestTimeout <= 0 {
		p.add("request_timeout: must be positive")
	}
}

// Postgres reports whether Database names a PostgreSQL database.
func (c *Config) Postgres() bool {
	return strings.HasPrefix(c.Database, "postgres://") || strings.HasPrefix(c.Database, "postgresql://")
}

// ReadDatabasePassword returns the PostgreSQL password: the systemd
// credential database-password, else database_password_file (checked like
// a PIN file: regular, no access for group or others), else "" (pgx then
// reads PGPASSFILE or ~/.pgpass). The error never contains the password.
func (c *Config) ReadDatabasePassword() (string, error) {
	if !c.Postgres() {
		return "", nil
	}
	if dir := os.Getenv(credentialsEnv); dir != "" {
		pw, err := readSecretFile("database password file", filepath.Join(dir, "database-password"))
		if !errors.Is(err, os.ErrNotExist) {
			return pw, err
		}
	}
	if c.DatabasePasswordFile == "" {
		return "", nil
	}
	return readSecretFile("database password file", c.DatabasePasswordFile)
}

// GenerationSlots is the effective limits.max_generations: by default the
// working sessions of every token (a pool of n tokens runs n times as many).
func (c *Config) GenerationSlots() int {
	if c.Limits.MaxGenerations > 0 {
		return c.Limits.MaxGenerations
	}
	return max(1, c.HSM.MaxSessions-1) * len(c.HSM.TokenList())
}

// TrustedProxyNets parses trusted_proxies; a bare IP is a /32 or /128.
func (c *Config) TrustedProxyNets() ([]*net.IPNet, error) {
	var nets []*net.IPNet
	for _, p := range c.TrustedProxies {
		if !strings.Contains(p, "/") {
			ip := net.ParseIP(p)
			if ip == nil {
				return nil, fmt.Errorf("trusted_proxies %q: not an IP address or CIDR", p)
			}
			bits := 128
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			nets = append(nets, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(p)
		if err != nil {
			return nil, fmt.Errorf("trusted_proxies %q: not an IP address or CIDR", p)
		}
		nets = append(nets, n)
	}
	return nets, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// TokenList returns the configured tokens: hsm.tokens, or the one
// hsm.token_label names. An empty PINFile means hsm.pin_file (ReadPIN).
func (h HSM) TokenList() []Token {
	if len(h.Tokens) > 0 {
		return h.Tokens
	}
	return []Token{{TokenLabel: h.TokenLabel}}
}

// SignOnly reports whether token t (of TokenList) must make sign-only keys:
// its own require_sign_only, else hsm.require_sign_only.
func (h HSM) SignOnly(t Token) bool {
	if t.RequireSignOnly != nil {
		return *t.RequireSignOnly
	}
	return h.RequireSignOnly
}

// LoginKeys returns token t's bound on keys loaded per login (of
// TokenList): its own keys_per_login, else hsm.keys_per_login.
func (h HSM) LoginKeys(t Token) int {
	if t.KeysPerLogin != nil {
		return *t.KeysPerLogin
	}
	return h.KeysPerLogin
}

// ReadTokenPIN returns the user PIN of one token of TokenList: its own
// pin_file when it has one, else ReadPIN's.
func (c *Config) ReadTokenPIN(t Token) (string, error) {
	if t.PINFile == "" {
		return c.ReadPIN()
	}
	return readPINFile(t.PINFile)
}

// ReadPIN returns the HSM user PIN. A systemd credential
// ($CREDENTIALS_DIRECTORY/hsm-pin) wins over pin_file, so the unit can hand
// the PIN over without it ever being readable by the service user's files.
// Trailing newlines are trimmed; the error never contains the PIN.
func (c *Config) ReadPIN() (string, error) {
	if dir := os.Getenv(credentialsEnv); dir != "" {
		pin, err := readPINFile(filepath.Join(dir, "hsm-pin"))
		if !errors.Is(err, os.ErrNotExist) {
			return pin, err
		}
	}
	return readPINFile(c.HSM.PINFile)
}

// credentialsEnv names the directory systemd passes credentials in.
const credentialsEnv = "CREDENTIALS_DIRECTORY"

// maxPINFile bounds what is read from a PIN (or other secret) file.
const maxPINFile = 4 << 10

// readPINFile reads a PIN file (see readPrivateFile); trailing newlines
// are not part of the PIN.
func readPINFile(path string) (string, error) {
	if path == "" {
		return "", errors.New("config: no PIN file configured")
	}
	return readSecretFile("PIN file", path)
}

// readSecretFile reads a file holding one secret (a PIN, a password),
// checked as readPrivateFile says; trailing newlines are not part of it;
// kind names it in errors.
func readSecretFile(kind, path string) (string, error) {
	data, err := readPrivateFile(path, kind)
	if err != nil {
		return "", err
	}
	pin := strings.TrimRight(string(data), "\r\n")
	if pin == "" {
		return "", fmt.Errorf("config: %s %s is empty", kind, path)
	}
	return pin, nil
}

// readPrivateFile reads a file holding a secret (what names it in errors).
// It is opened once and the open file is checked (fstat) and read, so the
// mode checked is the mode of the bytes read; only a regular file is read.
// Group or others may not have any access, except to a systemd credential
// (a file in $CREDENTIALS_DIRECTORY), whose directory only the service can
// read. The error never holds the content.
func readPrivateFile(path, what string) ([]byte, error) {
	// O_NONBLOCK: opening a named pipe must not wait for a writer; it is
	// refused below like any file that is not regular.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", what, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", what, err)
	}
	switch {
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("config: %s %s is not a regular file (%v)", what, path, st.Mode().Type())
	case st.Mode().Perm()&0o077 != 0 && !systemdCredential(path):
		return nil, fmt.Errorf("config: %s %s is readable by group or others (mode %04o); chmod 600 it", what, path, st.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPINFile+1))
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", what, err)
	}
	if len(data) > maxPINFile {
		return nil, fmt.Errorf("config: %s %s is larger than %d bytes", what, path, maxPINFile)
	}
	return data, nil
}

// systemdCredential reports whether path lies in $CREDENTIALS_DIRECTORY:
// a file systemd passed the service (LoadCredential=, SetCredential=).
func systemdCredential(path string) bool {
	dir := os.Getenv(credentialsEnv)
	if dir == "" || !filepath.IsAbs(dir) {
		return false
	}
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(path))
	return err == nil && filepath.IsLocal(rel)
}
