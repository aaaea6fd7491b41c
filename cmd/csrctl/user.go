package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/csrd/csrd/auth"
)

// minPasswordLen: csrd's users are API clients, so their passwords come
// from a generator or a vault; shorter is a mistake.
const minPasswordLen = 12

func runUserAdd(fs *flag.FlagSet, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	g := addGrantFlags(fs)
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of stdin instead of generating one")
	replace := fs.Bool("replace", false, "replace an existing user of that name (new password and grants)")
	mem := fs.Uint("argon2-memory", uint(auth.DefaultArgon2.Memory), "argon2id memory in KiB")
	passes := fs.Uint("argon2-time", uint(auth.DefaultArgon2.Time), "argon2id passes")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("user add takes exactly one NAME, got %d", fs.NArg())
	}
	name := fs.Arg(0)
	grants, err := g.grants()
	if err != nil {
		return err
	}
	path, err := g.path()
	if err != nil {
		return err
	}
	password, generated := "", false
	if *fromStdin {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("reading the password from stdin: %w", err)
		}
		password = strings.TrimRight(line, "\r\n")
		if len(password) < minPasswordLen {
			return fmt.Errorf("the password must have at least %d characters", minPasswordLen)
		}
	} else {
		b := make([]byte, 18)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		password, generated = base64.RawURLEncoding.EncodeToString(b), true
	}
	hash, err := auth.HashPassword(password, auth.Argon2Params{Memory: uint32(*mem), Time: uint32(*passes), Threads: auth.DefaultArgon2.Threads})
	if err != nil {
		return err
	}
	af, err := auth.LoadOrEmpty(path)
	if err != nil {
		return err
	}
	if err := af.AddUser(auth.User{Name: name, PasswordHash: hash, Grants: grants}, *replace); err != nil {
		return fmt.Errorf("%w (use -replace to change it)", err)
	}
	if err := af.Save(path); err != nil {
		return err
	}
	verb := "added"
	if *replace {
		verb = "added or replaced"
	}
	auditAuthChange(context.Background(), *g.config, stderr, "user_add", fmt.Sprintf("user %s %s: %s", name, verb, describeGrants(grants)))
	fmt.Fprintf(stderr, "user %s %s in %s (%s); csrd picks it up within a second\n", name, verb, path, describeGrants(grants))
	if generated {
		fmt.Fprintln(stderr, "password (shown once, store it now):")
		fmt.Fprintln(stdout, password)
	}
	return nil
}
