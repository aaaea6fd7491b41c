package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
)

// sanFlag collects repeated -san TYPE:VALUE flags into Keyfactor's SANs map.
type sanFlag map[string][]string

func (s sanFlag) String() string { return fmt.Sprint(map[string][]string(s)) }

func (s sanFlag) Set(v string) error {
	typ, val, ok := strings.Cut(v, ":")
	if !ok || typ == "" || val == "" {
		return fmt.Errorf("%q: want TYPE:VALUE, e.g. dns:www.example.com or ip4:192.0.2.1", v)
	}
	t := strings.ToLower(typ)
	s[t] = append(s[t], val)
	return nil
}

func runGenerate(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	cfgPath := fs.String("config", defaultConfigPath, "csrd configuration file")
	subject := fs.String("subject", "", `subject DN, e.g. 'CN=www.example.com,O="Example, Inc.",C=US' (required)`)
	keyType := fs.String("key-type", "", "RSA, ECC, ED25519 or ED448 (required)")
	keyLength := fs.Int("key-length", 0, "RSA modulus bits, or 256/384/521 for ECC without -curve")
	curve := fs.String("curve", "", "ECC curve by name or OID (P-256, secp384r1, 1.3.132.0.35)")
	altType := fs.String("alt-key-type", "", "hybrid CSR: ML-DSA-44, ML-DSA-65 or ML-DSA-87")
	template := fs.String("template", "", "Keyfactor template name")
	pattern := fs.Int("pattern", 0, "enrollment pattern id")
	out := fs.String("out", "", "write the CSR to this file instead of stdout")
	sans := sanFlag{}
	fs.Var(sans, "san", "subject alternative name TYPE:VALUE (dns, ip4, ip6, uri, rfc822, upn, registeredid); repeatable")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErr("generate takes flags only, got %q", fs.Args())
	}
	if *subject == "" || *keyType == "" {
		return usageErr("-subject and -key-type are required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	env, err := openKeyEnv(ctx, *cfgPath, stderr)
	if err != nil {
		return err
	}
	defer env.Close()
	res, err := env.svc.Generate(ctx, lifecycle.GenerateRequest{
		Subject: *subject, SANs: sans, Template: *template, EnrollmentPatternID: *pattern,
		Key:   policy.KeyRequest{KeyType: *keyType, KeyLength: *keyLength, Curve: *curve, AlternativeKeyType: *altType},
		Audit: env.row("generate"), // written with the record's completion
	})
	if err != nil {
		env.audit(ctx, stderr, "generate", 0, err)
		return err
	}
	fmt.Fprintf(stderr, "record %d, key %s in token %s\n", res.ID, res.KeyLabel, res.TokenLabel)
	if *out != "" {
		return os.WriteFile(*out, []byte(res.CSRPEM), 0o644)
	}
	_, err = io.WriteString(stdout, res.CSRPEM)
	return err
}
