package config

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// CA is one certificate authority csrd enrolls with (an entry of cas:).
// Enrollment/CSR's CertificateAuthority names it.
type CA struct {
	Name string `yaml:"name"`
	ACME ACME   `yaml:"acme"`
	// RenewBefore renews this long before a certificate expires; 0 means
	// the CA's ACME Renewal Information window, else one third of the
	// certificate's lifetime before it ends.
	RenewBefore time.Duration `yaml:"renew_before"`
	// RetireAfterExpiry destroys a renewed certificate's old key this long
	// after that certificate expired (nil: DefaultRetireAfterExpiry).
	RetireAfterExpiry *time.Duration `yaml:"retire_after_expiry"`
	// RevokeOnRetire revokes, at the CA, the certificate of a key retired
	// before that certificate expires.
	RevokeOnRetire bool `yaml:"revoke_on_retire"`
	// DeployHook is a program run after each renewal, with the new key's
	// URI and certificate in its environment; no shell is involved.
	DeployHook string `yaml:"deploy_hook"`
}

// ACME is how csrd speaks RFC 8555 to a CA.
type ACME struct {
	// Directory is the CA's ACME directory URL (https).
	Directory string `yaml:"directory"`
	// RootsFile (PEM) replaces the system roots for the ACME server's TLS.
	RootsFile string `yaml:"roots_file"`
	// ChainRootsFile (PEM) holds the roots an issued chain must verify to;
	// without it each certificate of the chain must be signed by the next.
	ChainRootsFile string   `yaml:"chain_roots_file"`
	Contact        []string `yaml:"contact"`
	// EAB is the External Account Binding (RFC 8555 7.3.4) some CAs require.
	EAB *EAB `yaml:"eab"`
	// Profile asks for an issuance profile the CA's directory offers.
	Profile string `yaml:"profile"`
	// Challenge is none, http-01 or dns-01.
	Challenge string `yaml:"challenge"`
	// HTTP01Listen is where the plain-HTTP challenge responder listens.
	HTTP01Listen string `yaml:"http01_listen"`
	DNS01        *DNS01 `yaml:"dns01"`
}

// EAB binds the ACME account to an account the CA already knows.
type EAB struct {
	KID string `yaml:"kid"`
	// HMACFile holds the MAC key, base64url as CAs hand it out.
	HMACFile string `yaml:"hmac_file"`
}

// DNS01 publishes dns-01 answers with RFC 2136 updates signed by TSIG.
type DNS01 struct {
	Server         string `yaml:"server"`
	Zone           string `yaml:"zone"`
	TSIGName       string `yaml:"tsig_name"`
	TSIGAlgorithm  string `yaml:"tsig_algorithm"`
	TSIGSecretFile string `yaml:"tsig_secret_file"`
	// Transport is udp (the default) or tcp.
	Transport string `yaml:"transport"`
}

// The challenges csrd answers.
const (
	ChallengeNone   = "none"
	ChallengeHTTP01 = "http-01"
	ChallengeDNS01  = "dns-01"
)

// DefaultRetireAfterExpiry is retire_after_expiry when it is not set.
const DefaultRetireAfterExpiry = 7 * 24 * time.Hour

// RetireAfter is the effective retire_after_expiry.
func (c CA) RetireAfter() time.Duration {
	if c.RetireAfterExpiry == nil {
		return DefaultRetireAfterExpiry
	}
	return *c.RetireAfterExpiry
}

// ChallengeType is the effective challenge (none when unset).
func (a ACME) ChallengeType() string {
	if a.Challenge == "" {
		return ChallengeNone
	}
	return a.Challenge
}

// caName keeps a CA's name usable in the account key's token label
// (csrd-acme-<name>) and in URLs and logs.
var caName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$`)

// validateCAs checks cas: every entry, and that names are unique.
func (c *Config) validateCAs() []error {
	var errs []error
	seen := map[string]bool{}
	for i, ca := range c.CAs {
		where := fmt.Sprintf("cas[%d]", i)
		if ca.Name != "" {
			where = fmt.Sprintf("cas[%d] (%s)", i, ca.Name)
		}
		add := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf(where+"."+format, args...))
		}
		key := strings.ToLower(ca.Name)
		switch {
		case !caName.MatchString(ca.Name):
			add("name %q: 1-48 letters, digits, '.', '_' or '-', starting with a letter or digit", ca.Name)
		case seen[key]:
			add("name %q: listed twice (names match case-insensitively)", ca.Name)
		}
		seen[key] = true
		ca.validate(add)
	}
	return errs
}

func (ca CA) validate(add func(string, ...any)) {
	ca.ACME.validate(add)
	if ca.RenewBefore < 0 {
		add("renew_before: must not be negative")
	}
	if ca.RetireAfterExpiry != nil && *ca.RetireAfterExpiry < 0 {
		add("retire_after_expiry: must not be negative")
	}
	if ca.DeployHook != "" && !filepath.IsAbs(ca.DeployHook) {
		add("deploy_hook %q: must be an absolute path (it runs without a shell)", ca.DeployHook)
	}
}

func (a ACME) validate(add func(string, ...any)) {
	if u, err := url.Parse(a.Directory); err != nil || u.Scheme != "https" || u.Host == "" {
		add("acme.directory %q: must be an https URL (RFC 8555 requires HTTPS)", a.Directory)
	}
	for _, c := range a.Contact {
		if !strings.HasPrefix(c, "mailto:") || len(c) == len("mailto:") {
			add("acme.contact %q: must be a mailto: URL", c)
		}
	}
	if a.EAB != nil && (a.EAB.KID == "" || a.EAB.HMACFile == "") {
		add("acme.eab: kid and hmac_file are both required")
	}
	switch a.ChallengeType() {
	case ChallengeNone:
	case ChallengeHTTP01:
		if _, _, err := net.SplitHostPort(a.HTTP01Listen); err != nil {
			add("acme.http01_listen %q: required with challenge http-01 (host:port): %v", a.HTTP01Listen, err)
		}
	case ChallengeDNS01:
		if a.DNS01 == nil {
			add("acme.dns01: required with challenge dns-01")
		} else {
			a.DNS01.validate(add)
		}
	default:
		add("acme.challenge %q: must be none, http-01 or dns-01", a.Challenge)
	}
}

func (d DNS01) validate(add func(string, ...any)) {
	if _, _, err := net.SplitHostPort(d.Server); err != nil {
		add("acme.dns01.server %q: host:port of the primary that accepts updates: %v", d.Server, err)
	}
	if d.Zone == "" {
		add("acme.dns01.zone: required")
	}
	if d.TSIGName == "" || d.TSIGSecretFile == "" {
		add("acme.dns01: tsig_name and tsig_secret_file are required (csrd sends only signed updates)")
	}
	switch strings.ToLower(d.TSIGAlgorithm) {
	case "", "hmac-sha256", "hmac-sha384", "hmac-sha512":
	default:
		add("acme.dns01.tsig_algorithm %q: must be hmac-sha256, hmac-sha384 or hmac-sha512", d.TSIGAlgorithm)
	}
	switch d.Transport {
	case "", "udp", "tcp":
	default:
		add("acme.dns01.transport %q: must be udp or tcp", d.Transport)
	}
}

// FindCA returns the CA named name: exactly, or (Keyfactor names CAs as
// "host\\Logical Name") the part after the last backslash, case-insensitively.
func (c *Config) FindCA(name string) (CA, bool) {
	if i := strings.LastIndexByte(name, '\\'); i >= 0 {
		name = name[i+1:]
	}
	for _, ca := range c.CAs {
		if strings.EqualFold(ca.Name, name) {
			return ca, true
		}
	}
	return CA{}, false
}

// ReadEABKey reads the EAB MAC key: base64url (padded or not, as CAs hand
// it out), surrounding white space ignored. The error never holds the key.
func ReadEABKey(path string) ([]byte, error) {
	return readSecret(path, "EAB MAC key")
}

// ReadTSIGSecret reads a TSIG secret file: base64, as tsig-keygen prints
// it. It returns the base64 text, which is what DNS libraries take.
func ReadTSIGSecret(path string) (string, error) {
	b, err := readSecret(path, "TSIG secret")
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

func readSecret(path, what string) ([]byte, error) {
	raw, err := readPrivateFile(path, what+" file")
	if err != nil {
		return nil, err
	}
	s := strings.TrimSpace(string(raw))
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) > 0 {
			return b, nil
		}
	}
	return nil, fmt.Errorf("config: %s file %s is not base64 (or base64url)", what, path)
}
