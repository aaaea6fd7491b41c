package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/csrd/csrd/lifecycle"
)

func runImport(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	cfgPath := fs.String("config", defaultConfigPath, "csrd configuration file")
	chain := fs.String("chain", "", "PEM file with the issuer certificates (optional)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("import takes exactly one certificate file")
	}
	cert, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	req := lifecycle.ImportRequest{Certificate: string(cert)}
	if *chain != "" {
		b, err := os.ReadFile(*chain)
		if err != nil {
			return err
		}
		req.Chain = string(b)
	}
	ctx := context.Background()
	env, err := openKeyEnv(ctx, *cfgPath, stderr)
	if err != nil {
		return err
	}
	defer env.Close()
	req.Audit = env.row("import") // written with the intent to marry
	res, err := env.svc.Import(ctx, req)
	switch {
	case err != nil:
		env.audit(ctx, stderr, "import", 0, err)
		return err
	case res.AlreadyMarried: // nothing changed, nothing written yet
		env.audit(ctx, stderr, "import", res.ID, nil)
	}
	state := "married"
	if res.AlreadyMarried {
		state = "already married (nothing changed)"
	}
	fmt.Fprintf(stdout, "record %d %s: serial %s, issuer %s, not after %s\nkey: %s\n",
		res.ID, state, res.Serial, res.Issuer, res.NotAfter.UTC().Format("2006-01-02T15:04:05Z"), res.KeyURI)
	return nil
}
