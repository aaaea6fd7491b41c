package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/enroll"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/store"
)

// enrollment opens enroll's use cases on csrd's configuration, token and
// database: the same code csrd's background loop runs.
func (e *keyEnv) enrollment(stderr io.Writer) (*enroll.Service, error) {
	tok, ok := e.pool.Tokens()[0].(enroll.AccountToken)
	if !ok {
		return nil, fmt.Errorf("the first token cannot hold ACME account keys")
	}
	return enroll.New(enroll.Options{
		CAs: e.cfg.CAs, Records: e.db, Keys: e.svc, Token: tok, Wait: e.cfg.RequestTimeout,
		CertDir: filepath.Join(filepath.Dir(e.cfg.Database), "certs"),
		Log:     zerolog.New(stderr).Level(zerolog.WarnLevel).With().Timestamp().Str("service", "csrctl").Logger(),
	})
}

func runKey(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "retire" {
		return usageErr("usage: csrctl key retire [-config FILE] ID")
	}
	fs := flag.NewFlagSet("key retire", flag.ContinueOnError)
	cfgPath := fs.String("config", defaultConfigPath, "csrd configuration file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: csrctl key retire [flags] ID\n\nEnds the life of a married key: with revoke_on_retire its certificate is revoked\nat its CA if it has not expired; the key is destroyed in the token after its audit\nrow, and the record becomes retired with its certificate facts kept.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args[1:], stderr); err != nil {
		return err
	}
	ids, err := parseIDs(fs.Args())
	if err != nil || len(ids) != 1 {
		return usageErr("key retire takes exactly one ID")
	}
	ctx := context.Background()
	env, err := openKeyEnv(ctx, *cfgPath, stderr)
	if err != nil {
		return err
	}
	defer env.Close()
	enr, err := env.enrollment(stderr)
	if err != nil {
		return err
	}
	audit := env.auditEntry("retire", ids[0])
	if err := enr.RetireKey(ctx, ids[0], audit); err != nil {
		env.audit(ctx, stderr, "retire", ids[0], err)
		return err
	}
	if audit.Hash == "" { // already retired: nothing was decided now
		env.audit(ctx, stderr, "retire", ids[0], nil)
	}
	fmt.Fprintf(stdout, "record %d retired: key destroyed in the token\n", ids[0])
	return nil
}

func runRenew(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("renew", flag.ContinueOnError)
	cfgPath := fs.String("config", defaultConfigPath, "csrd configuration file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: csrctl renew [flags] ID\n\nRenews now the certificate of record ID (one csrd enrolled): a new key in the\ntoken under the policy in force, a new order replacing the certificate, the new\ncertificate married, then the CA's deploy hook. The old key is retired after its\ncertificate expires (plus retire_after_expiry).\n\nflags:")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	ids, err := parseIDs(fs.Args())
	if err != nil || len(ids) != 1 {
		return usageErr("renew takes exactly one ID")
	}
	ctx := context.Background()
	env, err := openKeyEnv(ctx, *cfgPath, stderr)
	if err != nil {
		return err
	}
	defer env.Close()
	enr, err := env.enrollment(stderr)
	if err != nil {
		return err
	}
	// http-01 challenges are answered from this process during its renewal.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	if err := enr.ServeChallenges(sctx); err != nil {
		fmt.Fprintf(stderr, "csrctl: %v; while csrd runs, ask it instead: POST /csrd/v1/keys/%d/renew\n", err, ids[0])
	}
	next, err := enr.RenewNow(ctx, ids[0])
	env.audit(ctx, stderr, "renew", ids[0], err)
	if err != nil {
		return err
	}
	rec, err := env.db.Get(ctx, next)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "record %d renewed by record %d: serial %s, not after %s\nkey: %s\n", ids[0], next, rec.Cert.Serial,
		rec.Cert.NotAfter.UTC().Format("2006-01-02T15:04:05Z"), lifecycle.KeyURI(rec))
	if err := enr.DeployHooks(ctx); err != nil {
		fmt.Fprintf(stderr, "csrctl: the deploy hook failed (csrd runs it again): %v\n", err)
	}
	return nil
}

// auditEntry is the audit row of an operation this csrctl run performs,
// handed to an operation that appends it in its own transaction.
func (e *keyEnv) auditEntry(op string, id int64) *store.AuditEntry {
	var rid [8]byte
	_, _ = rand.Read(rid[:])
	return &store.AuditEntry{Actor: e.actor, AuthMethod: "local", Source: "csrctl", Operation: op, Result: store.AuditOK,
		RecordID: id, KeyLabel: lifecycle.Label(id), RequestID: "csrctl-" + hex.EncodeToString(rid[:])}
}
