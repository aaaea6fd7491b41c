package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/version"
)

func TestRun(t *testing.T) {
	cases := []struct {
		args     []string
		code     int
		contains string
	}{
		{args: nil, code: 2, contains: "usage: csrctl"},
		{args: []string{"help"}, code: 0, contains: "commands:"},
		{args: []string{"nope"}, code: 2, contains: `unknown command "nope"`},
		{args: []string{"version"}, code: 0, contains: "csrctl " + version.Read().String() + "\n"},
		{args: []string{"version", "x"}, code: 2, contains: "takes no arguments"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(tc.args, &out, &errOut); code != tc.code {
				t.Fatalf("exit %d, want %d (%s%s)", code, tc.code, out.String(), errOut.String())
			}
			if !strings.Contains(out.String()+errOut.String(), tc.contains) {
				t.Errorf("output %q does not contain %q", out.String()+errOut.String(), tc.contains)
			}
		})
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	fixture.StopShared()
	os.Exit(code)
}
