package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// commandPaths walks the command tree: every group and leaf, root first.
func commandPaths(c *command, path []string, visit func(path []string, c *command)) {
	visit(path, c)
	for _, sub := range c.subs {
		commandPaths(sub, append(slices.Clone(path), sub.name), visit)
	}
}

// TestHelpAtEveryLevel asks every command of the tree for help, as a new
// operator would: -h, --help and `help PATH` print the usage on stdout and
// exit 0; a missing or unknown subcommand, or an unknown flag, prints the
// usage on stderr and exits 2.
func TestHelpAtEveryLevel(t *testing.T) {
	var paths []string
	commandPaths(root, nil, func(path []string, c *command) {
		paths = append(paths, strings.Join(path, " "))
		name := "csrctl"
		if len(path) > 0 {
			name += " " + strings.Join(path, " ")
		}
		type call struct {
			args          []string
			code          int
			stdout        string // prefix of stdout
			stderr        string // in stderr
			stderrHasHelp bool
		}
		calls := []call{
			{args: append(slices.Clone(path), "-h"), stdout: "usage: " + name},
			{args: append(slices.Clone(path), "--help"), stdout: "usage: " + name},
			{args: append([]string{"help"}, path...), stdout: "usage: " + name},
		}
		if c.run == nil {
			calls = append(calls,
				call{args: slices.Clone(path), code: 2, stderr: "a command is required", stderrHasHelp: true},
				call{args: append(slices.Clone(path), "nope"), code: 2, stderr: `unknown command "nope"`, stderrHasHelp: true})
		} else {
			calls = append(calls,
				call{args: append(slices.Clone(path), "-nope"), code: 2, stderr: "flag provided but not defined: -nope", stderrHasHelp: true})
		}
		for _, tc := range calls {
			t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
				var out, errOut bytes.Buffer
				code := run(tc.args, &out, &errOut)
				if code != tc.code {
					t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out.String(), errOut.String())
				}
				if !strings.HasPrefix(out.String(), tc.stdout) {
					t.Errorf("stdout does not start with %q:\n%s", tc.stdout, out.String())
				}
				if tc.stdout != "" && errOut.Len() > 0 {
					t.Errorf("help wrote to stderr:\n%s", errOut.String())
				}
				if !strings.Contains(errOut.String(), tc.stderr) {
					t.Errorf("stderr lacks %q:\n%s", tc.stderr, errOut.String())
				}
				if tc.stderrHasHelp && (!strings.Contains(errOut.String(), "usage: "+name) || out.Len() > 0) {
					t.Errorf("a mistake must print the usage of %q on stderr only\nstdout:\n%s\nstderr:\n%s", name, out.String(), errOut.String())
				}
			})
		}
	})
	want := []string{"", "audit", "audit verify", "audit pubkey", "backup", "db", "db migrate", "generate", "import", "key",
		"key retire", "nodes", "pending", "pending ls", "pending show", "pending rm", "policy", "policy check", "reconcile",
		"renew", "restore", "token", "token create", "token probe", "user", "user add", "version"}
	if !slices.Equal(paths, want) {
		t.Errorf("command paths %q, want %q", paths, want)
	}
}

// TestUsageContents checks what the help says where an operator looks for
// it: every command at the top, the token commands apart; a group's
// synopses; a token command's hint at SOFTHSM2_CONF.
func TestUsageContents(t *testing.T) {
	cases := []struct {
		args []string
		want []string // in order, in stdout
	}{
		{[]string{"-h"}, []string{"commands:", "audit verify", "pending ls", "pending show", "policy check", "version",
			"open the HSM token", "generate", "import", "pending rm", "reconcile"}},
		{[]string{"pending", "--help"}, []string{"usage: csrctl pending ls [flags]\n", "       csrctl pending show [flags] ID\n",
			"       csrctl pending rm [flags] ID...\n", "ls", "list pending CSRs", "rm", "destroy their keys"}},
		{[]string{"pending", "rm", "-h"}, []string{"usage: csrctl pending rm [flags] ID...",
			"SOFTHSM2_CONF=.dev/softhsm2.conf csrctl pending rm -config config/csrd.example.yaml", "-config"}},
		{[]string{"pending", "ls", "-h"}, []string{"usage: csrctl pending ls [flags]", "-limit", "-subject"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(tc.args, &out, &errOut); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			rest := out.String()
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("stdout lacks %q (in order):\n%s", w, out.String())
				}
				rest = rest[i+len(w):]
			}
			if tc.args[0] == "pending" && tc.args[1] == "ls" && strings.Contains(out.String(), "SOFTHSM2_CONF") {
				t.Errorf("pending ls needs no token, but its help says to set SOFTHSM2_CONF:\n%s", out.String())
			}
		})
	}
}
