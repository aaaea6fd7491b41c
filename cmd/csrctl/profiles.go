package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/store"
)

// probedBy is the learned_by of the profiles token probe records.
const probedBy = "csrctl token probe"

// recordProfiles records the probed tokens' profiles in csrd's database
// beside the ones csrd recorded at its start, saying whether each
// changed. A database csrd has not made yet is left alone: csrctl, often
// run as another user, must not create the file csrd will own.
func recordProfiles(ctx context.Context, w io.Writer, path string, toks []*hsm.Token) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(w, "profiles not recorded: no database at %s yet (csrd records them when it admits each token)\n", path)
		return nil
	}
	db, err := store.Open(ctx, path)
	if err != nil {
		return err
	}
	defer db.Close()
	before, err := db.TokenProfiles(ctx)
	if err != nil {
		return err
	}
	for _, t := range toks {
		doc, err := json.Marshal(t.Profile())
		if err != nil {
			return err
		}
		p := store.TokenProfile{TokenLabel: t.Label(), TokenSerial: t.Serial(), LearnedBy: probedBy, Profile: doc}
		fmt.Fprintf(w, "token %q serial %s: profile recorded in %s (%s)\n", p.TokenLabel, p.TokenSerial, path, compared(before, &p))
		if err := db.SaveTokenProfile(ctx, &p); err != nil {
			return err
		}
	}
	return nil
}

// compared says how p compares with the profile recorded before for the
// same token.
func compared(before []store.TokenProfile, p *store.TokenProfile) string {
	for _, b := range before {
		if b.TokenLabel != p.TokenLabel || b.TokenSerial != p.TokenSerial {
			continue
		}
		how := "differs from"
		if bytes.Equal(b.Profile, p.Profile) {
			how = "same as"
		}
		return fmt.Sprintf("%s the one %s recorded at %s", how, b.LearnedBy, b.LearnedTime.Format("2006-01-02 15:04:05Z07:00"))
	}
	return "first recorded"
}

// printRecorded prints every profile recorded in the database at path,
// read-only: no token is touched.
func printRecorded(ctx context.Context, w io.Writer, path string) error {
	db, err := store.OpenReadOnly(ctx, path)
	if err != nil {
		return err
	}
	defer db.Close()
	ps, err := db.TokenProfiles(ctx)
	if err != nil {
		return err
	}
	if len(ps) == 0 {
		fmt.Fprintf(w, "no token profile recorded in %s\n", path)
	}
	for _, p := range ps {
		var doc bytes.Buffer
		if err := json.Indent(&doc, p.Profile, "", "  "); err != nil {
			return err
		}
		fmt.Fprintf(w, "token %q serial %s: learned %s by %s\n%s\n\n", p.TokenLabel, p.TokenSerial,
			p.LearnedTime.Format("2006-01-02 15:04:05Z07:00"), p.LearnedBy, doc.String())
	}
	return nil
}
