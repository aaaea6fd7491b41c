package auth

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"
)

// Unknown names are verified against a dummy of the file's costliest hash
// parameters, whatever order the users come in, so that the response time
// does not tell which names exist.
func TestUnknownNameCostsTheCostliest(t *testing.T) {
	cheapBcrypt, _ := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost)
	costly, _ := HashPassword("x", Argon2Params{Memory: 8 * 1024, Time: 2, Threads: 1})
	grants := Grants{Operations: []Operation{OpGenerate}}
	tests := []struct {
		name  string
		users []User
		want  string
	}{
		{"cheap bcrypt first", []User{{Name: "fast", PasswordHash: string(cheapBcrypt), Grants: grants}, {Name: "slow", PasswordHash: costly, Grants: grants}}, "argon2id m=8192,t=2,p=1"},
		{"costly first", []User{{Name: "slow", PasswordHash: costly, Grants: grants}, {Name: "fast", PasswordHash: string(cheapBcrypt), Grants: grants}}, "argon2id m=8192,t=2,p=1"},
		{"one kind", []User{{Name: "fast", PasswordHash: string(cheapBcrypt), Grants: grants}}, "bcrypt cost 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := openFile(t, &File{Users: tt.users}, Options{})
			g := gate(a)
			close(g.gate)
			if _, err := a.Basic(context.Background(), testSrc, "nobody", "x"); !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("unknown name: %v", err)
			}
			h := <-g.hashes
			c, err := costOf(h)
			if err != nil || c.String() != tt.want {
				t.Fatalf("unknown name verified at %v (%v), want %s", c, err, tt.want)
			}
			for _, u := range tt.users {
				if h == u.PasswordHash {
					t.Fatal("unknown name verified against a real user's hash")
				}
			}
		})
	}
}

// A dummy matches no password and is no error to verify.
func TestDummyHashes(t *testing.T) {
	for _, c := range []hashCost{{bcrypt: 4}, {argon: cheap}} {
		h := c.dummy()
		if got, err := costOf(h); err != nil || got != c {
			t.Fatalf("dummy %q: cost %v, %v", h, got, err)
		}
		if ok, err := VerifyPassword(h, ""); ok || err != nil {
			t.Errorf("dummy %s: %v, %v", c, ok, err)
		}
	}
}

// csrd warns at load about users whose hash is cheaper than its default,
// and only about them.
func TestWeakHashesWarnedAtLoad(t *testing.T) {
	weakBcrypt, _ := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost)
	weakArgon, _ := HashPassword("x", cheap)
	grants := Grants{Operations: []Operation{OpGenerate}}
	for _, tt := range []struct {
		name  string
		users []User
		warn  []string
	}{
		{"weak", []User{{Name: "old-bcrypt", PasswordHash: string(weakBcrypt), Grants: grants}, {Name: "cheap-argon", PasswordHash: weakArgon, Grants: grants}}, []string{"old-bcrypt", "cheap-argon"}},
		// A hash of the default parameters (a dummy: computing a real one
		// costs seconds under the race detector).
		{"default", []User{{Name: "strong", PasswordHash: hashCost{argon: DefaultArgon2}.dummy(), Grants: grants}}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "auth.yaml")
			if err := (&File{Users: tt.users}).Save(path); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if _, err := Open(path, zerolog.New(&buf), Options{}); err != nil {
				t.Fatal(err)
			}
			warnings := 0
			for _, line := range strings.Split(buf.String(), "\n") {
				if strings.Contains(line, `"level":"warn"`) {
					warnings++
				}
			}
			if warnings != len(tt.warn) {
				t.Errorf("%d warnings, want %d: %s", warnings, len(tt.warn), buf.String())
			}
			for _, w := range tt.warn {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("no warning names %s: %s", w, buf.String())
				}
			}
		})
	}
}
