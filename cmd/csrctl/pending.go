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

func runPending(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageErr("usage: csrctl pending ls|show ID|rm ID... [-config FILE]")
	}
	fs := flag.NewFlagSet("pending "+args[0], flag.ContinueOnError)
	cfgPath := fs.String("config", defaultConfigPath, "csrd configuration file")
	var limit *int
	var query *string
	switch args[0] {
	case "ls":
		limit = fs.Int("limit", 50, "at most this many, newest first")
		query = fs.String("subject", "", "only subjects containing this text (ASCII case-insensitive)")
	case "show", "rm":
	default:
		return usageErr("pending %q: want ls, show or rm", args[0])
	}
	if err := parseFlags(fs, args[1:], stderr); err != nil {
		return err
	}
	ids, err := parseIDs(fs.Args())
	if err != nil {
		return err
	}
	switch {
	case args[0] == "ls" && len(ids) > 0:
		return usageErr("pending ls takes no ids")
	case args[0] == "show" && len(ids) != 1:
		return usageErr("pending show takes exactly one ID")
	case args[0] == "rm" && len(ids) == 0:
		return usageErr("pending rm takes one or more IDs")
	}
	ctx := context.Background()
	env, err := openKeyEnv(ctx, *cfgPath, stderr)
	if err != nil {
		return err
	}
	defer env.Close()
	switch args[0] {
	case "ls":
		if *limit < 1 || *limit > store.MaxPageSize {
			return usageErr("-limit must be 1 to %d", store.MaxPageSize)
		}
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
	case "show":
		pemText, err := env.svc.GetPending(ctx, ids[0])
		if err != nil {
			return err
		}
		_, err = io.WriteString(stdout, pemText)
		return err
	}
	// rm: all or nothing, as DELETE CSRGeneration/Pending does. Each
	// deletion commits its audit row with the decision to delete.
	row := env.row("pending_delete")
	if len(ids) == 1 {
		err = env.svc.Delete(ctx, ids[0], row)
	} else {
		err = env.svc.DeleteMany(ctx, ids, row)
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
