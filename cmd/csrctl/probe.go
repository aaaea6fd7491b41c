package main

import (
	"context"
	"crypto/elliptic"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/hsm"
)

// probeSpecs are the keys csrd offers, each with whether the probe makes
// one: one RSA size stands for the type (the others differ only in the
// modulus, which the mechanism's range states; 8192 takes minutes).
var probeSpecs = []struct {
	spec  hsm.KeySpec
	round bool
}{
	{hsm.KeySpec{Type: hsm.KeyRSA, Bits: 2048}, true},
	{hsm.KeySpec{Type: hsm.KeyRSA, Bits: 3072}, false},
	{hsm.KeySpec{Type: hsm.KeyRSA, Bits: 4096}, false},
	{hsm.KeySpec{Type: hsm.KeyRSA, Bits: 8192}, false},
	{hsm.KeySpec{Type: hsm.KeyECDSA, Curve: elliptic.P256()}, true},
	{hsm.KeySpec{Type: hsm.KeyECDSA, Curve: elliptic.P384()}, true},
	{hsm.KeySpec{Type: hsm.KeyECDSA, Curve: elliptic.P521()}, true},
	{hsm.KeySpec{Type: hsm.KeyEd25519}, true},
	{hsm.KeySpec{Type: hsm.KeyEd448}, true},
}

// runTokenProbe is `csrctl token probe [-config FILE]`: what an operator
// runs first on a new HSM. It logs in to every configured token as csrd
// does, prints its profile (hsm.Profile) and makes, signs with, verifies
// and destroys one key of each type csrd would offer there.
func runTokenProbe(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	path := fs.String("config", defaultConfigPath, "csrd configuration file")
	logLevel := fs.String("log_level", "error", "level of the JSON log on stderr")
	recorded := fs.Bool("recorded", false, "print the profiles recorded in the database instead (no login to any token)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected arguments %q", fs.Args())
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if *recorded {
		return printRecorded(context.Background(), stdout, cfg.Database)
	}
	lvl, err := zerolog.ParseLevel(*logLevel)
	if err != nil {
		return usageErr("log_level %q: %v", *logLevel, err)
	}
	log := zerolog.New(stderr).Level(lvl).With().Timestamp().Str("service", "csrctl").Logger()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	toks, closeAll, err := hsm.OpenAll(ctx, hsm.Config{
		Module: cfg.HSM.Module, MaxSessions: 2, PoolWaitTimeout: cfg.HSM.SessionWaitTimeout,
	}, credentials(&cfg), log)
	if err != nil {
		return withSoftHSMHint(err, &cfg)
	}
	defer closeAll()
	failed := 0
	for _, t := range toks {
		printProfile(stdout, t.Profile(), cfg.HSM.MaxSessions)
		failed += probeRounds(ctx, stdout, t)
	}
	if err := recordProfiles(ctx, stdout, cfg.Database, toks); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d key round(s) failed", failed)
	}
	return nil
}

func printProfile(w io.Writer, p *hsm.Profile, maxSessions int) {
	fmt.Fprintf(w, "token %q serial %s: %s %s, hardware %s, firmware %s\n", p.Label, p.Serial, p.Manufacturer, p.Model, p.Hardware, p.Firmware)
	fmt.Fprintf(w, "sessions: at most %s, read-write %s (csrd opens up to hsm.max_sessions = %d)\n",
		sessionCap(p.MaxSessions), sessionCap(p.MaxRwSessions), maxSessions)
	fmt.Fprintf(w, "sealing (hybrid ML-DSA seeds, AES-GCM): %s\n", yesNo(p.Sealing))
	fmt.Fprintf(w, "\nmechanisms (%d):\n", len(p.Mechanisms))
	for _, m := range p.Mechanisms {
		sizes := ""
		if m.MinKeySize != 0 || m.MaxKeySize != 0 {
			sizes = fmt.Sprintf("%d-%d", m.MinKeySize, m.MaxKeySize)
		}
		fmt.Fprintf(w, "  %-30s %-12s %s\n", m.Name(), sizes, strings.Join(m.FlagNames(), ", "))
	}
	fmt.Fprintln(w, "\nkey types (from trial rounds at login):")
	for _, k := range p.Keys {
		if !k.Usable() {
			fmt.Fprintf(w, "  %-8s not offered: %v\n", k.Type, k.Err)
			continue
		}
		fmt.Fprintf(w, "  %-8s template %s; usage %s; signing: %s\n", k.Type, k.Template, k.Usage, k.Signing)
		if !k.Template.PublicUsage() {
			fmt.Fprintln(w, "           left out (the token refuses them; they protect nothing): CKA_VERIFY (public), CKA_ENCRYPT (public)")
		}
		if !k.Template.Locked() {
			fmt.Fprintln(w, "           left out (the token refuses every template with them): CKA_MODIFIABLE, CKA_COPYABLE: the key's attributes are not locked")
		}
		for _, r := range k.Refusals {
			fmt.Fprintf(w, "           refused: %s\n", r)
		}
		switch {
		case k.Modifiable:
			fmt.Fprintln(w, "           CKA_MODIFIABLE true")
		case k.ModifiableEnforced:
			fmt.Fprintln(w, "           CKA_MODIFIABLE false, enforced")
		default:
			fmt.Fprintln(w, "           CKA_MODIFIABLE false but NOT enforced: the token let the key's attributes be changed")
		}
		for _, s := range k.Sizes {
			if s.Err != nil {
				fmt.Fprintf(w, "           %s not offered: %v\n", s.Spec, s.Err)
			}
		}
	}
}

// probeRounds makes one key of each type and says how it went; it
// returns the number of rounds that failed.
func probeRounds(ctx context.Context, w io.Writer, t *hsm.Token) (failed int) {
	fmt.Fprintln(w, "\nrounds (generate, sign, verify, destroy):")
	for _, ps := range probeSpecs {
		switch err := t.CanGenerate(ps.spec); {
		case err != nil:
			fmt.Fprintf(w, "  %-12s not offered: %s\n", ps.spec, strings.TrimPrefix(err.Error(), "hsm: "))
			continue
		case !ps.round:
			fmt.Fprintf(w, "  %-12s offered (no round: the type's round stands for it)\n", ps.spec)
			continue
		}
		took, err := t.TryKey(ctx, ps.spec)
		if err != nil {
			failed++
			fmt.Fprintf(w, "  %-12s FAILED: %v\n", ps.spec, err)
			continue
		}
		fmt.Fprintf(w, "  %-12s ok (generated in %v)\n", ps.spec, took.Round(time.Millisecond))
	}
	fmt.Fprintln(w)
	return failed
}

func sessionCap(n uint) string {
	if n == 0 {
		return "unlimited"
	}
	return fmt.Sprint(n)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
