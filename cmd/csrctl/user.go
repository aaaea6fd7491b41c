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

// runUserAdd is `csrctl user add`, hashing at csrd's default cost or more.
func runUserAdd(fs *flag.FlagSet, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return userAdd{stdin: stdin, floor: auth.DefaultArgon2}.run(fs, args, stdout, stderr)
}

// userAdd is `csrctl user add`.
type userAdd struct {
	stdin io.Reader
	// floor is the cheapest argon2id cost it hashes with: csrd's default,
	// because csrd warns about users below it (their quicker answer tells
	// that the name exists, and they resist offline guessing less).
	floor auth.Argon2Params
}

func (ua userAdd) run(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	g := addGrantFlags(fs)
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of stdin instead of generating one")
	replace := fs.Bool("replace", false, "replace an existing user of that name (new password and grants)")
	mem := fs.Uint("argon2-memory", uint(ua.floor.Memory), "argon2id memory in KiB (no less than the default)")
	passes := fs.Uint("argon2-time", uint(ua.floor.Time), "argon2id passes (no fewer than the default)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("user add takes exactly one NAME, got %d", fs.NArg())
	}
	name := fs.Arg(0)
	params := auth.Argon2Params{Memory: uint32(min(*mem, 1<<32-1)), Time: uint32(min(*passes, 1<<32-1)), Threads: ua.floor.Threads}
	if params.Memory < ua.floor.Memory || params.Time < ua.floor.Time {
		return usageErr("-argon2-memory %d -argon2-time %d: cheaper than csrd's default (%d KiB, %d passes); csrd would warn about such a user",
			params.Memory, params.Time, ua.floor.Memory, ua.floor.Time)
	}
	grants, err := g.grants()
	if err != nil {
		return err
	}
	path, err := g.path()
	if err != nil {
		return err
	}
	password, generated, err := ua.password(*fromStdin)
	if err != nil {
		return err
	}
	hash, err := auth.HashPassword(password, params)
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

// password reads the new user's password from the first line of stdin, or
// generates one (generated: it must be shown to the operator once).
func (ua userAdd) password(fromStdin bool) (password string, generated bool, err error) {
	if !fromStdin {
		b := make([]byte, 18)
		if _, err := rand.Read(b); err != nil {
			return "", false, err
		}
		return base64.RawURLEncoding.EncodeToString(b), true, nil
	}
	line, err := bufio.NewReader(ua.stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", false, fmt.Errorf("reading the password from stdin: %w", err)
	}
	password = strings.TrimRight(line, "\r\n")
	if len(password) < minPasswordLen {
		return "", false, fmt.Errorf("the password must have at least %d characters", minPasswordLen)
	}
	return password, false, nil
}
