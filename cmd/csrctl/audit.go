package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/csrd/csrd/store"
)

// errTampered makes audit verify exit 1 after it printed its finding.
var errTampered = errors.New("the audit log does not verify")

func runAudit(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		return usageErr("usage: csrctl audit verify [-config FILE | -database FILE]")
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	dbf := addDBFlags(fs)
	head := fs.String("head", "", "a head hash printed by an earlier verify; it must still be in the chain")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: csrctl audit verify [flags]\n\nRecomputes every audit row's SHA-256 and the chain between rows. Exit 0: intact;\nexit 1: tampered (the first broken row is named). Record the printed head hash\noutside this machine and pass it later with -head: that also catches a cut-off tail.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args[1:], stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErr("audit verify takes no arguments")
	}
	cfg, err := dbf.resolve()
	if err != nil {
		return err
	}
	ctx := context.Background()
	db, err := openDatabase(ctx, cfg)
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
	if *head != "" {
		id, err := db.AuditIDByHash(ctx, *head)
		if errors.Is(err, store.ErrNotFound) {
			fmt.Fprintf(stdout, "TAMPERED: the recorded head %s is no longer in the log (its tail was cut and the sequence rewound)\n", *head)
			return errTampered
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "recorded head %s is row %d\n", *head, id)
	}
	fmt.Fprintf(stdout, "audit log OK: %d rows, last id %d, head %s\n", rep.Rows, rep.LastID, orNone(rep.Head))
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
