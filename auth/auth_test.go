package auth

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"
)

var cheap = Argon2Params{Memory: 64, Time: 1, Threads: 1}

// testSrc is the client address of tests that use one.
const testSrc = "192.0.2.1"

func TestPasswordHashes(t *testing.T) {
	a, err := HashPassword("pässwörd", cheap)
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := HashPassword("pässwörd", cheap)
	if a == a2 || !strings.HasPrefix(a, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("hashes %q %q: want salted PHC strings", a, a2)
	}
	b, _ := bcrypt.GenerateFromPassword([]byte("pässwörd"), bcrypt.MinCost)
	for _, h := range []string{a, string(b)} {
		for pw, want := range map[string]bool{"pässwörd": true, "passwort": false, "": false} {
			ok, err := VerifyPassword(h, pw)
			if err != nil || ok != want {
				t.Errorf("VerifyPassword(%.12s…, %q) = %v, %v; want %v", h, pw, ok, err, want)
			}
		}
	}
	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "$argon2id$v=19$m=64,t=1$x$y", "$2b$99$x"} {
		if _, err := VerifyPassword(bad, "x"); !errors.Is(err, ErrBadHash) {
			t.Errorf("VerifyPassword(%q) err %v, want ErrBadHash", bad, err)
		}
	}
	if _, err := HashPassword("x", Argon2Params{Memory: 1 << 30, Time: 1, Threads: 1}); err == nil {
		t.Error("absurd memory accepted")
	}
}

func TestTokens(t *testing.T) {
	tok, id, sha, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if tokenID(tok) != id || !tokenMatches(tok, sha) || tokenMatches(tok+"x", sha) {
		t.Errorf("token %q id %q does not round-trip", tok, id)
	}
	for _, bad := range []string{"", "csrd_", "csrd_zzzzzzzzzzzz_" + strings.Repeat("a", 43), "xyz_" + tok[5:], tok[:len(tok)-1]} {
		if tokenID(bad) != "" {
			t.Errorf("tokenID(%q) accepted", bad)
		}
	}
}

func TestGrants(t *testing.T) {
	g := Grants{Operations: []Operation{OpGenerate}, EnrollmentPatterns: []int{3}, Templates: []string{"WebServer"}}
	tests := []struct {
		pattern  int
		template string
		want     bool
	}{
		{3, "", true}, {4, "", false}, {3, "Other", true}, {4, "WebServer", false}, // the pattern wins
		{0, "webserver", true}, {0, "Other", false}, {0, "", false},
	}
	for _, tt := range tests {
		if got := g.AllowsTarget(tt.pattern, tt.template); got != tt.want {
			t.Errorf("AllowsTarget(%d, %q) = %v, want %v", tt.pattern, tt.template, got, tt.want)
		}
	}
	if !(Grants{Operations: []Operation{OpGenerate}}).AllowsTarget(0, "") || !g.Allows(OpGenerate) || g.Allows(OpPendingDelete) {
		t.Error("unscoped grants or Allows wrong")
	}
	if !(Grants{Operations: []Operation{OpAdmin}}).Allows(OpPendingDelete) {
		t.Error("admin does not imply the others")
	}
}

func TestFileValidate(t *testing.T) {
	h, _ := HashPassword("x", cheap)
	_, id, sha, _ := NewToken()
	ops := Grants{Operations: []Operation{OpGenerate}}
	tests := []struct {
		name string
		f    File
		want string
	}{
		{"ok", File{Users: []User{{Name: `CORP\a`, PasswordHash: h, Grants: ops}}, Tokens: []Token{{Name: "t", ID: id, SHA256: sha, Grants: ops}}}, ""},
		{"duplicate name across kinds", File{Users: []User{{Name: "a", PasswordHash: h, Grants: ops}}, Tokens: []Token{{Name: "A", ID: id, SHA256: sha, Grants: ops}}}, "already used"},
		{"colon in name", File{Users: []User{{Name: "a:b", PasswordHash: h, Grants: ops}}}, "':'"},
		{"plain password", File{Users: []User{{Name: "a", PasswordHash: "secret", Grants: ops}}}, "password_hash"},
		{"no operations", File{Users: []User{{Name: "a", PasswordHash: h}}}, "no operations"},
		{"unknown operation", File{Users: []User{{Name: "a", PasswordHash: h, Grants: Grants{Operations: []Operation{"root"}}}}}, "unknown operation"},
		{"bad token hash", File{Tokens: []Token{{Name: "t", ID: id, SHA256: "00", Grants: ops}}}, "sha256"},
		{"client without match", File{Clients: []Client{{Name: "c", Grants: ops}}}, "subject_cn or sha256"},
		{"pattern zero", File{Users: []User{{Name: "a", PasswordHash: h, Grants: Grants{Operations: []Operation{OpGenerate}, EnrollmentPatterns: []int{0}}}}}, "pattern"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.f.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidFile) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want ErrInvalidFile naming %q", err, tt.want)
			}
		})
	}
	if _, err := ParseFile([]byte("users:\n  - name: a\n    pasword_hash: x\n")); !errors.Is(err, ErrInvalidFile) {
		t.Errorf("misspelt key: %v", err)
	}
}

func TestFileModeAndReload(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.yaml")
	h, _ := HashPassword("one", cheap)
	f := &File{Users: []User{{Name: "alice", PasswordHash: h, Grants: Grants{Operations: []Operation{OpGenerate}}}}}
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("saved with mode %04o, want 0600", st.Mode().Perm())
	}
	a, err := Open(path, zerolog.Nop(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	a.now = func() time.Time { return clock }
	if id, err := a.Basic(ctx, testSrc, `DOM\alice`, "one"); err != nil || id.Name != "alice" || id.Method != MethodBasic {
		t.Fatalf("Basic: %+v %v", id, err)
	}
	// The cached verification is not a way in with another password.
	if _, err := a.Basic(ctx, testSrc, "alice", "two"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("wrong password: %v", err)
	}
	// Change the password (as csrctl user add -replace does); after the
	// reload interval the old one stops working, cache or not.
	h2, _ := HashPassword("two", cheap)
	f.Users[0].PasswordHash = h2
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(2 * time.Second)
	if _, err := a.Basic(ctx, testSrc, "alice", "one"); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("old password after reload: %v", err)
	}
	if _, err := a.Basic(ctx, testSrc, "alice", "two"); err != nil {
		t.Errorf("new password after reload: %v", err)
	}
	// A broken file keeps the previous version in force.
	if err := os.WriteFile(path, []byte("users: [{name: x}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(2 * time.Second)
	if _, err := a.Basic(ctx, testSrc, "alice", "two"); err != nil {
		t.Errorf("after a broken edit: %v", err)
	}
	// Too open a mode is refused at start.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, zerolog.Nop(), Options{}); !errors.Is(err, ErrInvalidFile) || !strings.Contains(err.Error(), "0644") {
		t.Errorf("world-readable file: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "missing.yaml"), zerolog.Nop(), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestCertificateMatching(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.yaml")
	leaf := &x509.Certificate{Raw: []byte("der bytes"), Subject: pkix.Name{CommonName: "ra01"}}
	other := &x509.Certificate{Raw: []byte("other der"), Subject: pkix.Name{CommonName: "ra01"}}
	f := &File{Clients: []Client{
		{Name: "pinned", SHA256: "B6:" + strings.Repeat("00", 31), Grants: Grants{Operations: []Operation{OpAdmin}}},
		{Name: "by-cn", SubjectCN: "ra01", Grants: Grants{Operations: []Operation{OpGenerate}}},
	}}
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	a, err := Open(path, zerolog.Nop(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*x509.Certificate{leaf, other} {
		id, err := a.Certificate(context.Background(), testSrc, c)
		if err != nil || id.Name != "by-cn" || id.Method != MethodMTLS {
			t.Errorf("Certificate(CN=ra01): %+v %v", id, err)
		}
	}
	if _, err := a.Certificate(context.Background(), testSrc, &x509.Certificate{Raw: []byte("x"), Subject: pkix.Name{CommonName: "nobody"}}); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("unlisted: %v", err)
	}
}

// Save replaces the file but keeps its owner and group (root:csrd 0640 on
// a systemd install), or csrd could no longer read it.
func TestSaveKeepsOwnerAndMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing a file's owner needs root")
	}
	path := filepath.Join(t.TempDir(), "auth.yaml")
	h, _ := HashPassword("x", cheap)
	f := &File{Users: []User{{Name: "a", PasswordHash: h, Grants: Grants{Operations: []Operation{OpGenerate}}}}}
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 0, 65534); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	f.Users[0].Name = "b"
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	sys := st.Sys().(*syscall.Stat_t)
	if sys.Gid != 65534 || st.Mode().Perm() != 0o640 {
		t.Errorf("after Save: gid %d mode %04o, want 65534 and 0640", sys.Gid, st.Mode().Perm())
	}
}
