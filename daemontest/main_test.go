package daemontest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	softhsmtest "github.com/csrd/csrd/softhsm-test"
)

// Shared by every test in the package: the csrd binary under test and the
// SoftHSM configuration (SOFTHSM2_CONF, inherited by every daemon) in
// which each test makes its own token, so that one test's keys never look
// like another's unrecorded objects.
var (
	csrdBin string
	baseTok *softhsmtest.Token
	testLog = zerolog.New(os.Stderr).Level(zerolog.ErrorLevel)
)

func TestMain(m *testing.M) {
	if os.Getenv(envListObjects) != "" {
		// Child of instance.objects: list a token of another SoftHSM config.
		if err := listObjectsChild(os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "daemontest list objects:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "daemontest:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "csrd-daemontest-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(dir)
	if csrdBin, err = buildCSRD(dir); err != nil {
		return 1, err
	}
	// SOFTHSM2_CONF is set for this process and inherited by every daemon.
	if baseTok, err = softhsmtest.Setup(filepath.Join(dir, "softhsm"), "csrd-daemontest"); err != nil {
		return 1, err
	}
	defer fixture.StopShared()
	return m.Run(), nil
}

// newToken makes a token of the test's own (labels are at most 32 bytes)
// and opens the test's logged-in view of it, for checking what is and is
// not on it; the view is closed when the test ends.
func newToken(t testing.TB, label string) (*softhsmtest.Token, *hsm.Token) {
	t.Helper()
	if err := baseTok.AddToken(label); err != nil {
		t.Fatal(err)
	}
	tok := baseTok.With(label)
	view, err := hsm.Open(context.Background(), hsm.Config{
		Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN,
		MaxSessions: 4, PoolWaitTimeout: time.Minute,
	}, testLog)
	if err != nil {
		t.Fatalf("open the test's view of token %s: %v", label, err)
	}
	t.Cleanup(func() { view.Close() })
	return tok, view
}

// buildCSRD compiles cmd/csrd into dir, the way `make build` does, so the
// tests run the real binary rather than an in-process imitation of main.
func buildCSRD(dir string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "csrd")
	args := []string{"build", "-trimpath", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command(goTool, append(args, "github.com/csrd/csrd/cmd/csrd")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build cmd/csrd: %v\n%s", err, out)
	}
	return bin, nil
}
