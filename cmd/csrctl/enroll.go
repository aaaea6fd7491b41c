package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/enroll"
	"github.com/csrd/csrd/lifecycle"
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

func runKeyRetire(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	cfgPath := fs.String("config", defaultConfigPath, "csrd configuration file")
	if err := parseFlags(fs, args, stdout); err != nil {
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
	row := env.row("retire") // written with the intent to retire
	row.RecordID, row.KeyLabel = ids[0], lifecycle.Label(ids[0])
	if err := enr.RetireKey(ctx, ids[0], row); err != nil {
		env.audit(ctx, stderr, "retire", ids[0], err)
		return err
	}
	if row.Hash == "" { // already retired: nothing was decided now
		env.audit(ctx, stderr, "retire", ids[0], nil)
	}
	fmt.Fprintf(stdout, "record %d retired: key destroyed in the token\n", ids[0])
	return nil
}

func runRenew(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	cfgPath := fs.String("config", defaultConfigPath, "csrd configuration file")
	if err := parseFlags(fs, args, stdout); err != nil {
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
