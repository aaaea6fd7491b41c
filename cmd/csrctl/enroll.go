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

// withEnrollment runs act on the one record ID the command names, with the
// key environment and the enrollment service opened for it and closed after.
func withEnrollment(fs *flag.FlagSet, args []string, stdout, stderr io.Writer,
	act func(ctx context.Context, env *keyEnv, enr *enroll.Service, id int64) error) error {
	cfgPath := fs.String("config", defaultConfigPath, "csrd configuration file")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	ids, err := parseIDs(fs.Args())
	if err != nil || len(ids) != 1 {
		return usageErr("%s takes exactly one ID", fs.Name())
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
	return act(ctx, env, enr, ids[0])
}

func runKeyRetire(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	return withEnrollment(fs, args, stdout, stderr, func(ctx context.Context, env *keyEnv, enr *enroll.Service, id int64) error {
		row := env.row("retire") // written with the intent to retire
		row.RecordID, row.KeyLabel = id, lifecycle.Label(id)
		if err := enr.RetireKey(ctx, id, row); err != nil {
			env.audit(ctx, stderr, "retire", id, err)
			return err
		}
		if row.Hash == "" { // already retired: nothing was decided now
			env.audit(ctx, stderr, "retire", id, nil)
		}
		fmt.Fprintf(stdout, "record %d retired: key destroyed in the token\n", id)
		return nil
	})
}

func runRenew(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	return withEnrollment(fs, args, stdout, stderr, func(ctx context.Context, env *keyEnv, enr *enroll.Service, id int64) error {
		// http-01 challenges are answered from this process during its renewal.
		sctx, stop := context.WithCancel(ctx)
		defer stop()
		if err := enr.ServeChallenges(sctx); err != nil {
			fmt.Fprintf(stderr, "csrctl: %v; while csrd runs, ask it instead: POST /csrd/v1/keys/%d/renew\n", err, id)
		}
		next, err := enr.RenewNow(ctx, id)
		env.audit(ctx, stderr, "renew", id, err)
		if err != nil {
			return err
		}
		rec, err := env.db.Get(ctx, next)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "record %d renewed by record %d: serial %s, not after %s\nkey: %s\n", id, next, rec.Cert.Serial,
			rec.Cert.NotAfter.UTC().Format("2006-01-02T15:04:05Z"), lifecycle.KeyURI(rec))
		if err := enr.DeployHooks(ctx); err != nil {
			fmt.Fprintf(stderr, "csrctl: the deploy hook failed (csrd runs it again): %v\n", err)
		}
		return nil
	})
}
