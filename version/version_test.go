package version

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	cases := []struct {
		name, buildInfo, want string
	}{
		{
			name: "tagged clean checkout",
			buildInfo: "path\tgithub.com/csrd/csrd/cmd/csrd\nmod\tgithub.com/csrd/csrd\tv1.2.0\t\n" +
				"build\t-trimpath=true\nbuild\tvcs=git\nbuild\tvcs.revision=6424f2148b2f84c86ec2ca91e9190f383336f91d\n" +
				"build\tvcs.time=2026-12-07T03:57:46Z\nbuild\tvcs.modified=false\n",
			want: "v1.2.0 (git 6424f2148b2f84c86ec2ca91e9190f383336f91d, 2026-12-07T03:57:46Z, go1.26.8)",
		},
		{
			name: "modified tree",
			buildInfo: "path\tgithub.com/csrd/csrd/cmd/csrctl\n" +
				"mod\tgithub.com/csrd/csrd\tv0.0.0-20261207035746-6424f2148b2f+dirty\t\n" +
				"build\tvcs=git\nbuild\tvcs.revision=6424f2148b2f84c86ec2ca91e9190f383336f91d\n" +
				"build\tvcs.time=2026-12-07T03:57:46Z\nbuild\tvcs.modified=true\n",
			want: "v0.0.0-20261207035746-6424f2148b2f+dirty (git 6424f2148b2f84c86ec2ca91e9190f383336f91d, modified, 2026-12-07T03:57:46Z, go1.26.8)",
		},
		{
			name:      "not stamped",
			buildInfo: "path\tgithub.com/csrd/csrd/cmd/csrd\nmod\tgithub.com/csrd/csrd\t(devel)\t\nbuild\t-buildvcs=false\n",
			want:      "(devel) (no VCS revision, go1.26.8)",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bi, err := debug.ParseBuildInfo(tc.buildInfo)
			if err != nil {
				t.Fatal(err)
			}
			bi.GoVersion = "go1.26.8" // ParseBuildInfo leaves it to `go version`
			if got := FromBuildInfo(bi).String(); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestStampedBinary builds a program that prints Line in a fresh git
// checkout, as `make build` does, and checks that it names the commit, and
// the modification once the tree is changed.
func TestStampedBinary(t *testing.T) {
	for _, tool := range []string{"go", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not on PATH: %v", tool, err)
		}
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go [0-9.]+$`).Find(mod) // the module needs csrd's go version
	files := map[string]string{
		"go.mod": "module example.com/stamped\n\n" + string(goLine) + "\n\nrequire github.com/csrd/csrd v0.0.0\n\n" +
			"replace github.com/csrd/csrd => " + root + "\n",
		"go.sum": string(sum),
		"main.go": "package main\n\nimport (\n\t\"fmt\"\n\n\t\"github.com/csrd/csrd/version\"\n)\n\n" +
			"func main() { fmt.Println(version.Line(\"stamped\")) }\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=", "GOPROXY=off", "GIT_CONFIG_GLOBAL=/dev/null",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("git", "init", "-q")
	run("git", "add", ".")
	run("git", "commit", "-q", "-m", "stamped")
	rev := run("git", "rev-parse", "HEAD")
	bin := filepath.Join(dir, "stamped")

	run("go", "build", "-buildvcs=true", "-o", bin, ".")
	line := run(bin)
	if !strings.HasPrefix(line, "stamped v0.0.0-") || !strings.Contains(line, "(git "+rev+", ") || strings.Contains(line, "modified") {
		t.Errorf("clean checkout: %q does not name commit %s as unmodified", line, rev)
	}

	if err := os.WriteFile(filepath.Join(dir, "extra.go"), []byte("package main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run("go", "build", "-buildvcs=true", "-o", bin, ".")
	line = run(bin)
	if !strings.Contains(line, "+dirty (git "+rev+", modified, ") {
		t.Errorf("modified tree: %q does not say so", line)
	}
}
