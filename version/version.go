package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// Info is what a binary's build information says about its main module.
type Info struct {
	// Version is the module version: a tag, a pseudo-version derived from
	// the commit (ending in +dirty for a modified tree), or "(devel)".
	Version string
	// VCS names the version control system ("git"); empty when the build
	// was not stamped (a work tree the go command does not recognise as a
	// checkout, or -buildvcs=false).
	VCS      string
	Revision string
	Time     time.Time // of the commit
	Modified bool      // the tree had uncommitted changes
	Go       string    // the toolchain that built the binary
}

// Read returns the running binary's Info.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "(unknown)", Go: runtime.Version()}
	}
	return FromBuildInfo(bi)
}

// FromBuildInfo extracts Info from build information, e.g. that of
// debug.ReadBuildInfo or debug.ParseBuildInfo.
func FromBuildInfo(bi *debug.BuildInfo) Info {
	i := Info{Version: bi.Main.Version, Go: bi.GoVersion}
	if i.Version == "" {
		i.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs":
			i.VCS = s.Value
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.time":
			i.Time, _ = time.Parse(time.RFC3339Nano, s.Value)
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	return i
}

// String is the version line's text after the program name, e.g.
// "v1.2.0 (git 0123abcd…, modified, 2026-12-03T08:14:00Z, go1.26.8)".
// The revision is printed in full: it is what `git show` takes.
func (i Info) String() string {
	var parts []string
	switch {
	case i.Revision != "":
		vcs := i.VCS
		if vcs == "" {
			vcs = "revision"
		}
		parts = append(parts, vcs+" "+i.Revision)
		if i.Modified {
			parts = append(parts, "modified")
		}
		if !i.Time.IsZero() {
			parts = append(parts, i.Time.UTC().Format(time.RFC3339))
		}
	default:
		parts = append(parts, "no VCS revision")
	}
	if i.Go != "" {
		parts = append(parts, i.Go)
	}
	return fmt.Sprintf("%s (%s)", i.Version, strings.Join(parts, ", "))
}

// Line is the whole version line a program prints: "csrd v1.2.0 (...)".
func Line(program string) string { return program + " " + Read().String() }
