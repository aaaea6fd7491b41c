package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// runNodes is `csrctl nodes`: the csrd nodes registered in the database,
// with their tokens, last heartbeat and version.
func runNodes(fs *flag.FlagSet, args []string, stdout, _ io.Writer) error {
	db := addDBFlags(fs)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErr("nodes takes no arguments")
	}
	cfg, err := db.resolve()
	if err != nil {
		return err
	}
	ctx := context.Background()
	s, err := openReadOnly(ctx, cfg) // nodes only reads
	if err != nil {
		return err
	}
	defer s.Close()
	nodes, err := s.ListNodes(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tHEARTBEAT\tURL\tVERSION\tTOKENS")
	for _, n := range nodes {
		state := "live"
		if !n.Live(now, cfg.Cluster.NodeTimeout) {
			state = "gone"
		}
		var toks []string
		for _, t := range n.Tokens {
			toks = append(toks, fmt.Sprintf("%s (serial %s)", t.Label, t.Serial))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s ago\t%s\t%s\t%s\n", n.Name, state, now.Sub(n.Heartbeat).Round(time.Second),
			n.URL, n.Version, orNone(strings.Join(toks, ", ")))
	}
	return tw.Flush()
}
