package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/csrd/csrd/store"
)

// runPendingLs and runPendingShow read records only: they work without the
// token (and without SOFTHSM2_CONF). runPendingRm destroys keys, so it
// opens the token.

func runPendingLs(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	cfgPath := fs.String("config", defaultConfigPath, "csrd configuration file")
	limit := fs.Int("limit", 50, "at most this many, newest first")
	query := fs.String("subject", "", "only subjects containing this text (ASCII case-insensitive)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("pending ls takes no ids")
	}
	if *limit < 1 || *limit > store.MaxPageSize {
		return usageErr("-limit must be 1 to %d", store.MaxPageSize)
	}
	ctx := context.Background()
	env, err := openRecordEnv(ctx, *cfgPath, stderr)
	if err != nil {
		return err
	}
	defer env.Close()
	list, total, err := env.svc.ListPending(ctx, store.PendingQuery{SubjectContains: *query, Descending: true, Limit: *limit})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tREQUESTED\tSUMMARY")
	for _, p := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\n", p.ID, p.RequestTime.UTC().Format(time.RFC3339), strings.Join(p.Summary, "; "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%d of %d pending\n", len(list), total)
	return nil
}

func runPendingShow(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	cfgPath := fs.String("config", defaultConfigPath, "csrd configuration file")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	ids, err := parseIDs(fs.Args())
	if err != nil {
		return err
	}
	if len(ids) != 1 {
		return usageErr("pending show takes exactly one ID")
	}
	ctx := context.Background()
	env, err := openRecordEnv(ctx, *cfgPath, stderr)
	if err != nil {
		return err
	}
	defer env.Close()
	pemText, err := env.svc.GetPending(ctx, ids[0], nil)
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, pemText)
	return err
}

func runPendingRm(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	cfgPath := fs.String("config", defaultConfigPath, "csrd configuration file")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	ids, err := parseIDs(fs.Args())
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return usageErr("pending rm takes one or more IDs")
	}
	ctx := context.Background()
	env, err := openKeyEnv(ctx, *cfgPath, stderr)
	if err != nil {
		return err
	}
	defer env.Close()
	// All or nothing, as DELETE CSRGeneration/Pending does. Each deletion
	// commits its audit row with the decision to delete.
	row := env.row("pending_delete")
	if len(ids) == 1 {
		err = env.svc.Delete(ctx, ids[0], nil, row)
	} else {
		err = env.svc.DeleteMany(ctx, ids, nil, row)
	}
	if err != nil {
		for _, id := range ids {
			env.audit(ctx, stderr, "pending_delete", id, err)
		}
		return err
	}
	fmt.Fprintf(stdout, "deleted %d pending CSR(s); their keys are destroyed in the token\n", len(ids))
	return nil
}

func parseIDs(args []string) ([]int64, error) {
	var ids []int64
	for _, a := range args {
		id, err := strconv.ParseInt(a, 10, 64)
		if err != nil || id < 1 {
			return nil, usageErr("%q is not a record id", a)
		}
		ids = append(ids, id)
	}
	return ids, nil
}
