package main

import (
	"fmt"
	"io"

	"github.com/csrd/csrd/version"
)

// printVersion prints the build's version line for `csrd -version` (or
// --version) and reports whether it did; nothing else has run by then, so
// it works without a configuration, a token or a database.
func printVersion(args []string, w io.Writer) bool {
	if len(args) != 1 || args[0] != "-version" && args[0] != "--version" {
		return false
	}
	fmt.Fprintln(w, version.Line("csrd"))
	return true
}
