package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/csrd/csrd/version"
)

// TestVersionFlag: -version alone prints the build's version line before
// anything else runs; with other flags it is a command-line mistake, never
// a daemon that starts.
func TestVersionFlag(t *testing.T) {
	want := "csrd " + version.Read().String() + "\n"
	cases := []struct {
		args    []string
		printed bool
		loadErr string // in loadConfig's error when nothing was printed
	}{
		{args: []string{"-version"}, printed: true},
		{args: []string{"--version"}, printed: true},
		{args: []string{"-version", "-config", "x.yaml"}, loadErr: "-version is used alone"},
		{args: []string{"-config", "x.yaml", "-version"}, loadErr: "-version is used alone"},
		// Without -version the configuration is loaded and validated as ever.
		{args: []string{"-listen", "127.0.0.1:0"}, loadErr: "hsm.token_label: required"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			if got := printVersion(tc.args, &out); got != tc.printed {
				t.Fatalf("printVersion = %v, want %v", got, tc.printed)
			}
			if tc.printed {
				if out.String() != want {
					t.Errorf("printed %q, want %q", out.String(), want)
				}
				return
			}
			if out.Len() != 0 {
				t.Errorf("printed %q without -version alone", out.String())
			}
			if _, err := loadConfig(tc.args); err == nil || !strings.Contains(err.Error(), tc.loadErr) {
				t.Errorf("loadConfig: %v, want %q", err, tc.loadErr)
			}
		})
	}
}
