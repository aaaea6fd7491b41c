// Command csrd-load drives a running csrd with concurrent Generate clients
// (with -churn deleting each generated key again) and reports requests, the
// status histogram, errors, latency percentiles and csrd's resident memory
// (given its pid). With -database it then checks
// that every accepted request's record exists with its CSR. It exits 1 when
// any answer was neither a 200 nor a 503 (backpressure), or a record is
// missing. `make load` runs it against a freshly started csrd (fresh.sh).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/csrd/csrd/store"
	"github.com/csrd/csrd/tools/loadgen"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "csrd-load:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("csrd-load", flag.ContinueOnError)
	base := fs.String("url", "http://127.0.0.1:8080/KeyfactorAPI", "csrd's Keyfactor API base URL")
	clients := fs.Int("clients", 64, "concurrent clients, one request in flight each")
	duration := fs.Duration("duration", 60*time.Second, "how long new requests are started")
	mixFlag := fs.String("mix", loadgen.DefaultMix, "key kinds and weights, e.g. p256=90,rsa2048=10")
	seed := fs.Uint64("seed", uint64(time.Now().UnixNano()), "seed for the key mix")
	pid := fs.Int("pid", 0, "csrd's process id, to report its resident memory")
	database := fs.String("database", "", "csrd's database file: afterwards, check every accepted record")
	authFile := fs.String("auth-file", "", "file holding an Authorization header value (kept off argv)")
	timeout := fs.Duration("timeout", 5*time.Minute, "per-request timeout")
	churn := fs.Bool("churn", false, "delete every generated key straight away (flat token size, for memory)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	mix, err := loadgen.ParseMix(*mixFlag)
	if err != nil {
		return err
	}
	client := loadgen.NewClient(*base, "", *clients, *timeout)
	if *authFile != "" {
		b, err := os.ReadFile(*authFile)
		if err != nil {
			return err
		}
		client.Authorization = strings.TrimSpace(string(b))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Printf("csrd-load: %d clients for %v against %s, mix %s, seed %d\n", *clients, *duration, client.Base, *mixFlag, *seed)
	res, err := loadgen.Run(ctx, loadgen.Config{
		Client: *client, Clients: *clients, Duration: *duration, Mix: mix, Seed: *seed, Pid: *pid, Churn: *churn,
	})
	if res != nil {
		res.WriteReport(os.Stdout)
	}
	if err != nil {
		return err
	}
	if *database != "" {
		db, err := store.Open(ctx, *database)
		if err != nil {
			return err
		}
		defer db.Close()
		want, what := []store.State{store.StatePending}, "pending"
		if *churn {
			want, what = []store.State{store.StatePending, store.StateDeleted}, "pending or (deleted again) deleted"
		}
		if err := loadgen.VerifyRecords(ctx, db, res.Accepted, want...); err != nil {
			return err
		}
		fmt.Printf("records: all %d accepted requests have their record, %s\n", len(res.Accepted), what)
	}
	if res.Unexpected > 0 {
		return fmt.Errorf("%d answers were neither 200 nor 503", res.Unexpected)
	}
	return nil
}
