// Command csrctl is csrd's operator CLI. It reads the same configuration
// file as csrd and works on the same token and database; every subcommand
// lives in its own file and only wires packages together — the logic it
// runs belongs to those packages.
//
// Exit codes: 0 success, 1 the operation failed, 2 the command line was
// wrong.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one csrctl subcommand.
type command struct {
	summary string
	// run gets the arguments after the subcommand name.
	run func(args []string, stdout, stderr io.Writer) error
}

// commands is every subcommand; files add theirs here.
var commands = map[string]command{
	"version":   {summary: "print the csrctl version", run: runVersion},
	"policy":    {summary: "policy check FILE: validate a policy file offline, print the effective rules", run: runPolicy},
	"reconcile": {summary: "compare token and database: finish interrupted work, list orphans and lost keys", run: runReconcile},
	"audit":     {summary: "audit verify: check the audit log's hash chain (edited, inserted or deleted rows)", run: runAudit},
	"user":      {summary: "user add NAME: add a Basic-auth user (DOMAIN\\user or user) to the auth file", run: runUser},
	"generate":  {summary: "generate a key pair in the token and print its CSR (as POST Generate does)", run: runGenerate},
	"pending":   {summary: "pending ls | show ID | rm ID...: list, print or delete pending CSRs", run: runPending},
	"import":    {summary: "import CERT.pem: marry an issued certificate to its key in the token", run: runImport},
	"token":     {summary: "token create NAME: make a Bearer API token (printed once) in the auth file", run: runToken},
	"backup":    {summary: "backup FILE: a consistent copy of the live database (csrd may run)", run: runBackup},
	"restore":   {summary: "restore FILE: put a backup back as the database (csrd stopped)", run: runRestore},
	"nodes":     {summary: "nodes: the csrd nodes sharing the database, their tokens and heartbeats", run: runNodes},
	"db":        {summary: "db migrate -from FILE -to postgres://…: copy a SQLite database into PostgreSQL", run: runDB},
}

// errUsage marks a command-line mistake (exit code 2).
var errUsage = errors.New("usage")

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	name := args[0]
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "csrctl: unknown command %q\n\n", name)
		usage(stderr)
		return 2
	}
	if err := cmd.run(args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "csrctl %s: %v\n", name, err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: csrctl COMMAND [flags] [args]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-16s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'csrctl COMMAND -h' for a command's flags.")
}

// usageErr wraps a message as a command-line error (exit code 2).
func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

func runVersion(args []string, stdout, _ io.Writer) error {
	if len(args) > 0 {
		return usageErr("version takes no arguments, got %s", strings.Join(args, " "))
	}
	fmt.Fprintln(stdout, "csrctl", version)
	return nil
}
