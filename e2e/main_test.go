package e2e

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
)

// Shared by every test in the package: the csrd binary under test and the
// SoftHSM configuration (SOFTHSM2_CONF, inherited by every daemon) in
// which each test makes its own token, so that one test's keys never look
// like another's unrecorded objects.
var (
	csrdBin string
	baseTok *fixture.Token
	testLog = zerolog.New(os.Stderr).Level(zerolog.ErrorLevel)
)

func TestMain(m *testing.M) {
	if os.Getenv(envListObjects) != "" {
		// Child of instance.objects: list a token of another SoftHSM config.
		if err := listObjectsChild(os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "e2e list objects:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// SOFTHSM2_CONF is set for this process and inherited by every daemon.
	os.Exit(fixture.Main(m, "e2e", []string{"csrd-e2e"}, func(s *fixture.Suite) (err error) {
		baseTok = s.Token
		if !testing.Short() { // -short skips every test that runs the binary
			csrdBin, err = fixture.CSRD(s.Dir)
		}
		return err
	}))
}

// fullRunOnly skips t under -short: it starts the csrd binary, which takes
// seconds, and the quick loop is for the packages' own tests. covers says
// what the full run (make test) proves with it.
func fullRunOnly(t *testing.T, covers string) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test of the csrd binary, skipped by -short; the full run covers " + covers)
	}
}

// newToken makes a token of the test's own (labels are at most 32 bytes)
// and opens the test's logged-in view of it, for checking what is and is
// not on it; the view is closed when the test ends.
func newToken(t testing.TB, label string) (*fixture.Token, *hsm.Token) {
	t.Helper()
	label = freshLabel(label)
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

// tokenLabels counts the tokens newToken made per label in this process.
var tokenLabels = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

// freshLabel is label the first time and label-N the Nth: a test run again
// (go test -count) gets a token of its own, not the keys of its last run.
func freshLabel(label string) string {
	tokenLabels.Lock()
	defer tokenLabels.Unlock()
	tokenLabels.n[label]++
	if n := tokenLabels.n[label]; n > 1 {
		return fmt.Sprintf("%s-%d", label, n)
	}
	return label
}
