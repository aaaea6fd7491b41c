package main

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/checkpoint"
	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/store"
)

// errTampered makes audit verify exit 1 after it printed its finding.
var errTampered = errors.New("the audit log does not verify")

// fileList collects a repeatable flag.
type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(v string) error { *f = append(*f, v); return nil }

func runAuditVerify(fs *flag.FlagSet, args []string, stdout, _ io.Writer) error {
	dbf := addDBFlags(fs)
	head := fs.String("head", "", "a head hash printed by an earlier verify; it must still be in the chain")
	maxAge := fs.Duration("max-age", 0, "fail unless a pinned key signed a checkpoint within this time (csrd signs at least every 10m while it runs)")
	var pubkeys fileList
	fs.Var(&pubkeys, "pubkey", "PEM public key(s) of the audit key(s) to trust, from 'csrctl audit pubkey'; repeatable")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErr("audit verify takes no arguments")
	}
	pinned, err := readPinnedKeys(pubkeys)
	if err != nil {
		return err
	}
	cfg, err := dbf.resolve()
	if err != nil {
		return err
	}
	ctx := context.Background()
	db, err := openReadOnly(ctx, cfg) // verify never changes, creates or migrates the database
	if err != nil {
		return err
	}
	defer db.Close()
	rep, err := db.VerifyAudit(ctx)
	var ce *store.AuditChainError
	if errors.As(err, &ce) {
		fmt.Fprintf(stdout, "TAMPERED: row %d: %s\n", ce.ID, ce.Reason)
		fmt.Fprintf(stdout, "the %d rows before it verify (last good hash %s)\n", rep.Rows, orNone(rep.Head))
		return errTampered
	}
	if err != nil {
		return err
	}
	res, err := checkpoint.Verify(rep, pinned)
	var cpe *checkpoint.Error
	if errors.As(err, &cpe) {
		fmt.Fprintf(stdout, "TAMPERED: checkpoint %d: %s\n", cpe.Checkpoint, cpe.Reason)
		return errTampered
	}
	if err != nil {
		return err
	}
	if *head != "" {
		if err := checkHead(ctx, stdout, db, *head); err != nil {
			return err
		}
	}
	printSignatures(stdout, res)
	if err := judgeSignatures(stdout, res, *maxAge, time.Now()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "audit log OK: %d rows, last id %d, head %s\n", rep.Rows, rep.LastID, orNone(rep.Head))
	return nil
}

// checkHead checks that a head hash recorded earlier is still in the chain.
func checkHead(ctx context.Context, w io.Writer, db *store.Store, head string) error {
	id, err := db.AuditIDByHash(ctx, head)
	if errors.Is(err, store.ErrNotFound) {
		fmt.Fprintf(w, "TAMPERED: the recorded head %s is no longer in the log (its tail was cut and the sequence rewound)\n", head)
		return errTampered
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "recorded head %s is row %d\n", head, id)
	return nil
}

// printSignatures says what the checkpoints prove.
func printSignatures(w io.Writer, res checkpoint.Result) {
	if !res.Pinned && len(res.UnpinnedKeys) == 0 && res.Trusted > 0 {
		fmt.Fprintln(w, "checkpoints were checked against the keys the database records, which a writer of the\n"+
			"database could have replaced: pass -pubkey FILE (from 'csrctl audit pubkey') for a proof")
	}
	if n := res.Newest; n != nil {
		fmt.Fprintf(w, "signed: rows 1 to %d, by %d checkpoint(s); newest: checkpoint %d of row %d by key %s (node %q) at %s\n",
			res.SignedThrough, res.Trusted, n.ID, n.AuditID, n.KeyID, n.Node, n.Time)
	}
	if u := res.Unsigned(); u > 0 {
		fmt.Fprintf(w, "unsigned: rows %d to %d (%d) are covered by the hash chain only, until csrd's next checkpoint\n",
			res.SignedThrough+1, res.LastID, u)
	}
	for _, id := range checkpoint.SortedKeyIDs(res.UnpinnedKeys) {
		fmt.Fprintf(w, "not trusted: %d checkpoint(s) by key %s, which was not pinned\n", res.UnpinnedKeys[id], id)
	}
}

// judgeSignatures fails a log no pinned key vouches for, or (with
// -max-age) one whose newest trusted checkpoint is too old: cutting a log
// back to an earlier state, checkpoints and all, leaves only that trace.
func judgeSignatures(w io.Writer, res checkpoint.Result, maxAge time.Duration, now time.Time) error {
	if res.Pinned && res.Newest == nil && res.LastID > 0 {
		fmt.Fprintln(w, "UNPROVEN: no checkpoint by a pinned key: the checkpoints were removed, or csrd never signed with this key")
		return errTampered
	}
	if maxAge <= 0 {
		return nil
	}
	if res.Newest == nil {
		fmt.Fprintf(w, "STALE: no trusted checkpoint, and -max-age %v asks for one\n", maxAge)
		return errTampered
	}
	if age := now.Sub(res.NewestTime()); age > maxAge {
		fmt.Fprintf(w, "STALE: the newest trusted checkpoint is %v old, more than -max-age %v: csrd has not signed since "+
			"(stopped, or its token away), or the log was cut back to an older state\n", age.Round(time.Second), maxAge)
		return errTampered
	}
	return nil
}

func readPinnedKeys(files []string) ([]*ecdsa.PublicKey, error) {
	var keys []*ecdsa.PublicKey
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		ks, err := checkpoint.ParsePublicKeys(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		keys = append(keys, ks...)
	}
	return keys, nil
}

// runAuditPubkey exports the audit public key(s) of csrd's first
// configured token — the one that holds the audit key — as PEM, making
// the key in the token if csrd has not yet.
func runAuditPubkey(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	cfgPath := fs.String("config", defaultConfigPath, "csrd configuration file")
	out := fs.String("out", "", "write the PEM to this file instead of stdout")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErr("audit pubkey takes no arguments")
	}
	ctx := context.Background()
	tok, closeTok, err := openFirstToken(ctx, *cfgPath, stderr)
	if err != nil {
		return err
	}
	defer closeTok()
	text, err := auditKeysPEM(ctx, tok)
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = io.WriteString(stdout, text)
		return err
	}
	return os.WriteFile(*out, []byte(text), 0o644)
}

// openFirstToken logs in to the first token csrd's configuration names:
// the one that holds the audit key.
func openFirstToken(ctx context.Context, cfgPath string, stderr io.Writer) (*hsm.Token, func(), error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (pass -config FILE)", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	first := cfg.HSM.TokenList()[0]
	log := zerolog.New(stderr).Level(zerolog.ErrorLevel).With().Timestamp().Str("service", "csrctl").Logger()
	toks, closeAll, err := hsm.OpenAll(ctx, hsm.Config{Module: cfg.HSM.Module, MaxSessions: 2, PoolWaitTimeout: cfg.HSM.SessionWaitTimeout},
		[]hsm.Credential{{TokenLabel: first.TokenLabel, PIN: func() (string, error) { return cfg.ReadTokenPIN(first) }}}, log)
	if err != nil {
		return nil, nil, err
	}
	return toks[0], closeAll, nil
}

// auditKeysPEM is every audit public key of tok as PEM, each after a line
// naming it, making the key first if the token has none.
func auditKeysPEM(ctx context.Context, tok *hsm.Token) (string, error) {
	if _, err := tok.AuditKey(ctx); err != nil {
		return "", err
	}
	keys, err := tok.AuditKeys(ctx)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, k := range keys {
		id, err := checkpoint.KeyID(k.Public())
		if err != nil {
			return "", err
		}
		p, err := checkpoint.EncodePublicKey(k.Public())
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "csrd audit key %s in token %q (serial %s), key id %s\n%s", k.Ref(), tok.Label(), tok.Serial(), id, p)
	}
	return b.String(), nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
