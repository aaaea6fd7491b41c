package auth

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// File is the auth file: every identity csrd accepts and its grants.
type File struct {
	Users   []User   `yaml:"users,omitempty"`
	Tokens  []Token  `yaml:"tokens,omitempty"`
	Clients []Client `yaml:"clients,omitempty"`
}

// User is a Basic-auth identity. Name is matched case-insensitively; see
// File.lookupUser for how a DOMAIN\ prefix is handled.
type User struct {
	Name         string `yaml:"name"`
	PasswordHash string `yaml:"password_hash"` // argon2id PHC string or bcrypt
	Grants       `yaml:",inline"`
}

// Token is a Bearer API token, stored as its id and SHA-256.
type Token struct {
	Name    string    `yaml:"name"`
	ID      string    `yaml:"id"`
	SHA256  string    `yaml:"sha256"`
	Created time.Time `yaml:"created,omitempty"`
	Expires time.Time `yaml:"expires,omitempty"` // zero: never
	Grants  `yaml:",inline"`
}

// Client is an mTLS identity: a client certificate that chains to the
// configured client CA and matches SubjectCN or SHA256 (the certificate's
// DER fingerprint; pinning survives a CA that issues the same CN twice).
type Client struct {
	Name      string `yaml:"name"`
	SubjectCN string `yaml:"subject_cn,omitempty"`
	SHA256    string `yaml:"sha256,omitempty"`
	Grants    `yaml:",inline"`
}

// Sentinel errors of the file model.
var (
	// ErrInvalidFile: the auth file does not parse or breaks a rule.
	ErrInvalidFile = errors.New("auth: invalid auth file")
	// ErrExists: an entry with that name already exists.
	ErrExists = errors.New("auth: entry exists")
)

// fileModeMask: the file must not be writable by group or others (anyone
// could grant themselves admin) nor readable by others (password hashes).
const fileModeMask = 0o026

// LoadFile reads and validates the auth file at path.
func LoadFile(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if st.Mode().Perm()&fileModeMask != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o; it must not be writable by group or others nor readable by others (chmod 600 or 640)",
			ErrInvalidFile, path, st.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	af, err := ParseFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return af, nil
}

// ParseFile parses and validates auth file content. Unknown keys are an
// error: a misspelt "operations" must not silently grant nothing or more.
func ParseFile(data []byte) (*File, error) {
	var af File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&af); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %v", ErrInvalidFile, err)
	}
	if err := af.Validate(); err != nil {
		return nil, err
	}
	return &af, nil
}

// Validate checks every entry and reports every problem at once.
func (af *File) Validate() error {
	c := fileCheck{names: map[string]string{}, ids: map[string]bool{}}
	for _, u := range af.Users {
		c.user(u)
	}
	for _, t := range af.Tokens {
		c.token(t)
	}
	for _, cl := range af.Clients {
		c.client(cl)
	}
	if len(c.errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidFile, errors.Join(c.errs...))
}

// fileCheck collects an auth file's problems entry by entry. Names are
// unique across users, tokens and clients (case-insensitively: they are
// matched so), token ids across tokens.
type fileCheck struct {
	errs  []error
	names map[string]string // lower-cased name -> kind of the entry that took it
	ids   map[string]bool
}

func (c *fileCheck) add(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

// name checks an entry's name and that no earlier entry took it.
func (c *fileCheck) name(kind, name string) {
	if err := checkName(name); err != nil {
		c.add("%s %q: %v", kind, name, err)
	}
	k := strings.ToLower(name)
	if prev, ok := c.names[k]; ok {
		c.add("%s %q: name already used by a %s", kind, name, prev)
	}
	c.names[k] = kind
}

func (c *fileCheck) grants(kind, name string, g Grants) {
	if err := g.validate(); err != nil {
		c.add("%s %q: %v", kind, name, err)
	}
}

func (c *fileCheck) user(u User) {
	c.name("user", u.Name)
	if err := checkHash(u.PasswordHash); err != nil {
		c.add("user %q: password_hash: %v", u.Name, err)
	}
	c.grants("user", u.Name, u.Grants)
}

func (c *fileCheck) token(t Token) {
	c.name("token", t.Name)
	if b, err := hex.DecodeString(t.ID); err != nil || len(b) != tokenIDLen {
		c.add("token %q: id must be %d hex digits", t.Name, 2*tokenIDLen)
	} else if c.ids[t.ID] {
		c.add("token %q: id %s used twice", t.Name, t.ID)
	}
	c.ids[t.ID] = true
	if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != 32 {
		c.add("token %q: sha256 must be 64 hex digits", t.Name)
	}
	c.grants("token", t.Name, t.Grants)
}

func (c *fileCheck) client(cl Client) {
	c.name("client", cl.Name)
	if cl.SubjectCN == "" && cl.SHA256 == "" {
		c.add("client %q: needs subject_cn or sha256", cl.Name)
	}
	if b, err := hex.DecodeString(strings.ReplaceAll(cl.SHA256, ":", "")); cl.SHA256 != "" && (err != nil || len(b) != 32) {
		c.add("client %q: sha256 must be the certificate's SHA-256 fingerprint (64 hex digits)", cl.Name)
	}
	c.grants("client", cl.Name, cl.Grants)
}

// checkName keeps names printable and colon-free: Basic auth splits at the
// first ':' and the audit log records names verbatim.
func checkName(n string) error {
	switch {
	case n == "":
		return errors.New("name is required")
	case len(n) > 256:
		return errors.New("name longer than 256 bytes")
	case strings.ContainsRune(n, ':'):
		return errors.New("name must not contain ':'")
	}
	for _, r := range n {
		if r < 0x20 || r == 0x7f {
			return errors.New("name contains a control character")
		}
	}
	return nil
}

// AddUser adds u; a user of the same name is replaced only when replace.
func (af *File) AddUser(u User, replace bool) error {
	for i, x := range af.Users {
		if strings.EqualFold(x.Name, u.Name) {
			if !replace {
				return fmt.Errorf("%w: user %q", ErrExists, u.Name)
			}
			af.Users[i] = u
			return af.Validate()
		}
	}
	af.Users = append(af.Users, u)
	return af.Validate()
}

// AddToken adds t; token names are unique.
func (af *File) AddToken(t Token) error {
	for _, x := range af.Tokens {
		if strings.EqualFold(x.Name, t.Name) {
			return fmt.Errorf("%w: token %q (pick another name, or remove the old entry)", ErrExists, t.Name)
		}
	}
	af.Tokens = append(af.Tokens, t)
	return af.Validate()
}

const fileHeader = `# csrd auth file: who may call csrd and what they may do (README: "Authentication").
# Managed by 'csrctl user add' and 'csrctl token create'; csrd re-reads it when it changes.
`

// Save writes af to path atomically (temporary file, fsync, rename), so csrd
// never reads a half-written file: mode 0600 for a new file; an existing
// file keeps its mode (when allowed) and its owner and group.
func (af *File) Save(path string) error {
	if err := af.Validate(); err != nil {
		return err
	}
	body, err := yaml.Marshal(af)
	if err != nil {
		return fmt.Errorf("auth: encode: %w", err)
	}
	mode := os.FileMode(0o600)
	st, statErr := os.Stat(path)
	if statErr == nil && st.Mode().Perm()&fileModeMask == 0 {
		mode = st.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".auth-*.tmp")
	if err != nil {
		return fmt.Errorf("auth: save: %w", err)
	}
	defer os.Remove(tmp.Name())
	// The rename replaces the file: keep its owner and group (root:csrd
	// 0640 under systemd), or csrd could no longer read it.
	if statErr == nil {
		if err := keepOwner(tmp, st); err != nil {
			tmp.Close()
			return fmt.Errorf("auth: save: keep owner of %s: %w", path, err)
		}
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("auth: save: %w", err)
	}
	if _, err := tmp.Write(append([]byte(fileHeader), body...)); err != nil {
		tmp.Close()
		return fmt.Errorf("auth: save: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("auth: save: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("auth: save: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("auth: save: %w", err)
	}
	return nil
}

// LoadOrEmpty loads path, or returns an empty File if it does not exist
// (the first `csrctl user add` creates it).
func LoadOrEmpty(path string) (*File, error) {
	af, err := LoadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &File{}, nil
	}
	return af, err
}
