package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/csrd/csrd/auth"
)

func runTokenCreate(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	g := addGrantFlags(fs)
	expires := fs.String("expires", "", "lifetime, e.g. 90d or 2160h (default: never expires)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("token create takes exactly one NAME, got %d", fs.NArg())
	}
	grants, err := g.grants()
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Second)
	var exp time.Time
	if *expires != "" {
		d, err := parseLifetime(*expires)
		if err != nil {
			return usageErr("-expires: %v", err)
		}
		exp = now.Add(d)
	}
	path, err := g.path()
	if err != nil {
		return err
	}
	tok, id, sha, err := auth.NewToken()
	if err != nil {
		return err
	}
	af, err := auth.LoadOrEmpty(path)
	if err != nil {
		return err
	}
	if err := af.AddToken(auth.Token{Name: fs.Arg(0), ID: id, SHA256: sha, Created: now, Expires: exp, Grants: grants}); err != nil {
		return err
	}
	if err := af.Save(path); err != nil {
		return err
	}
	auditAuthChange(context.Background(), *g.config, stderr, "token_create", fmt.Sprintf("token %s (id %s): %s", fs.Arg(0), id, describeGrants(grants)))
	until := "never expires"
	if !exp.IsZero() {
		until = "expires " + exp.Format(time.RFC3339)
	}
	fmt.Fprintf(stderr, "token %s (id %s) added to %s (%s; %s); shown once, store it now:\n", fs.Arg(0), id, path, describeGrants(grants), until)
	fmt.Fprintln(stdout, tok)
	return nil
}

// parseLifetime accepts Go durations and whole days ("90d").
func parseLifetime(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 || n > 3650 {
			return 0, fmt.Errorf("%q: want 1d to 3650d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q: want a positive duration such as 90d or 720h", s)
	}
	return d, nil
}
