package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// command is a node of csrctl's command tree: a group of subcommands (subs)
// or a leaf that runs. -h, -help and --help work at every level: help goes
// to stdout and exits 0; a command-line mistake prints the message and the
// usage on stderr and exits 2.
type command struct {
	name    string
	summary string // one line in the parent's usage
	subs    []*command

	// Leaves only.
	args  string // the synopsis after the command's path, e.g. "[flags] ID..."
	about string // what -h prints between the synopsis and the flags
	token bool   // the command opens the HSM token
	// run gets a flag set whose usage is the command's help, and the
	// arguments after the command's path; it defines its flags and parses
	// them with parseFlags.
	run func(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error
}

// errUsage marks a command-line mistake (exit code 2).
var errUsage = errors.New("usage")

type usageError string

func (e usageError) Error() string        { return string(e) }
func (e usageError) Is(target error) bool { return target == errUsage }

// usageErr is a command-line mistake (exit code 2); csrctl prints it with
// the command's usage.
func usageErr(format string, args ...any) error {
	return usageError(fmt.Sprintf(format, args...))
}

// tokenNote ends the help of every command that opens the token.
func tokenNote(path string) string {
	return "This command opens the HSM token that csrd's configuration names (hsm.module,\n" +
		"hsm.token_label or hsm.tokens, the PIN file). SoftHSM finds its tokens through the\n" +
		"file SOFTHSM2_CONF names; for the development token of `make run`, in the checkout:\n" +
		"  SOFTHSM2_CONF=.dev/softhsm2.conf " + path + " -config config/csrd.example.yaml ..."
}

// execute runs the command line args of the command at path ("csrctl
// pending") and returns the exit code.
func (c *command) execute(path string, args []string, stdout, stderr io.Writer) int {
	if c.run != nil {
		return c.runLeaf(path, args, stdout, stderr)
	}
	if len(args) == 0 {
		fmt.Fprintf(stderr, "%s: a command is required\n\n", path)
		c.usage(stderr, path)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		c.usage(stdout, path)
		return 0
	case "help": // "help pending rm" is "pending rm -h"
		return c.execute(path, append(append([]string(nil), args[1:]...), "-h"), stdout, stderr)
	}
	for _, sub := range c.subs {
		if sub.name == args[0] {
			return sub.execute(path+" "+sub.name, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n", path, args[0])
	c.usage(stderr, path)
	return 2
}

func (c *command) runLeaf(path string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(path, flag.ContinueOnError)
	fs.Usage = func() { c.leafUsage(fs, path) }
	err := c.run(fs, args, stdout, stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "%s: %v\n\n", path, err)
		fs.SetOutput(stderr)
		fs.Usage()
		return 2
	}
	fmt.Fprintf(stderr, "%s: %v\n", path, err)
	return 1
}

// parseFlags parses args into fs. -h prints the command's help on stdout
// and returns flag.ErrHelp; a flag mistake is a usage error (the caller
// prints it with the help, on stderr).
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	var help bytes.Buffer
	fs.SetOutput(&help)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		_, _ = help.WriteTo(stdout)
		return err
	case err != nil:
		return usageErr("%v", err)
	}
	return nil
}

func (c *command) leafUsage(fs *flag.FlagSet, path string) {
	w := fs.Output()
	fmt.Fprintln(w, strings.TrimSpace("usage: "+path+" "+c.args))
	if c.about != "" {
		fmt.Fprintf(w, "\n%s\n", c.about)
	}
	if c.token {
		fmt.Fprintf(w, "\n%s\n", tokenNote(path))
	}
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprintln(w, "\nflags:")
		fs.PrintDefaults()
	}
}

// usage prints a group's help: at the top, every command, those that open
// the token apart; below it, the synopsis of each subcommand.
func (c *command) usage(w io.Writer, path string) {
	if c == root {
		c.rootUsage(w)
		return
	}
	for i, sub := range c.subs {
		prefix := "usage: "
		if i > 0 {
			prefix = "       "
		}
		fmt.Fprintln(w, strings.TrimRight(prefix+path+" "+sub.name+" "+sub.args, " "))
	}
	fmt.Fprintln(w, "\ncommands:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, sub := range c.subs {
		fmt.Fprintf(tw, "  %s\t%s\n", sub.name, sub.summary)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\nRun '%s COMMAND -h' for a command's flags.\n", path)
}

func (c *command) rootUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s COMMAND [flags] [args]\n\n", c.name)
	fmt.Fprintf(w, "%s works on csrd's database, auth file and token, as csrd's configuration\n", c.name)
	fmt.Fprintf(w, "names them (-config FILE, default %s).\n", defaultConfigPath)
	var files, token [][2]string
	var walk func(c *command, path string)
	walk = func(c *command, path string) {
		if c.run != nil {
			if c.token {
				token = append(token, [2]string{path, c.summary})
			} else {
				files = append(files, [2]string{path, c.summary})
			}
		}
		for _, sub := range c.subs {
			walk(sub, strings.TrimSpace(path+" "+sub.name))
		}
	}
	walk(c, "")
	width := 0
	for _, l := range append(files, token...) {
		width = max(width, len(l[0]))
	}
	list := func(title string, lines [][2]string) {
		fmt.Fprintf(w, "\n%s\n", title)
		for _, l := range lines {
			fmt.Fprintf(w, "  %-*s  %s\n", width, l[0], l[1])
		}
	}
	list("commands:", files)
	list("commands that also open the HSM token (SoftHSM: set SOFTHSM2_CONF, see their -h):", token)
	fmt.Fprintf(w, "\nRun '%s COMMAND -h' or '%s help COMMAND' for a command's flags.\n", c.name, c.name)
}
