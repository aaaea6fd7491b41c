package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
)

// Environment of the crash child: the parent test re-executes this binary
// with these set, and the child dies at the named step.
const (
	envCrashStep  = "CSRD_TEST_CRASH_STEP"
	envCrashReq   = "CSRD_TEST_CRASH_REQUEST"
	envCrashDB    = "CSRD_TEST_CRASH_DB"
	envTokenLabel = "CSRD_TEST_TOKEN_LABEL"
	envPINFile    = "CSRD_TEST_PIN_FILE"
	envModule     = "CSRD_TEST_MODULE"
	envCrashOp    = "CSRD_TEST_CRASH_OP"  // generate (default), delete or import
	envCrashArg   = "CSRD_TEST_CRASH_ARG" // record id to delete, or PEM file to import

	reconLabel = "csrd-lifecycle-recon"
)

var (
	testTok   *fixture.Token
	testToken *hsm.Token
	// reconToken is a second token for reconciliation tests, which compare
	// a whole token with one database and must not see other tests' keys.
	reconToken *hsm.Token
	testLog    = zerolog.New(os.Stderr).Level(zerolog.ErrorLevel)
)

func TestMain(m *testing.M) {
	if step := os.Getenv(envCrashStep); step != "" {
		// Child of TestCrashBetweenSteps: the token and its config are the
		// parent's (SOFTHSM2_CONF is inherited). It must die by SIGKILL.
		fmt.Fprintln(os.Stderr, "crash child:", crashChild(step))
		os.Exit(3)
	}
	os.Exit(fixture.Main(m, "lifecycle", []string{"csrd-lifecycle-test", reconLabel, poolLabelA, poolLabelB, flowLabel, remoteLabel}, setUp))
}

func setUp(s *fixture.Suite) error {
	testTok = s.Token
	var err error
	if testToken, err = openToken(testTok.Module, testTok.Label, testTok.PIN); err != nil {
		return err
	}
	s.Defer(func() { testToken.Close() })
	if reconToken, err = openToken(testTok.Module, reconLabel, testTok.PIN); err != nil {
		return err
	}
	s.Defer(func() { reconToken.Close() })
	s.Defer(stopMatrix)
	return nil
}

func openToken(module, label, pin string) (*hsm.Token, error) {
	return hsm.Open(context.Background(), hsm.Config{
		Module: module, TokenLabel: label, PIN: pin, MaxSessions: 4, PoolWaitTimeout: time.Minute,
	}, testLog)
}

// destroyAtEnd destroys ref's objects on tok when the test ends: a key left
// behind changes what later tests find on the shared token. ErrNotFound is
// no failure: the code under test may have destroyed them.
func destroyAtEnd(t *testing.T, tok *hsm.Token, ref hsm.KeyRef) {
	t.Helper()
	t.Cleanup(func() {
		if err := tok.DestroyKey(context.Background(), ref); err != nil && !errors.Is(err, hsm.ErrNotFound) {
			t.Errorf("destroy %s: %v", ref, err)
		}
	})
}
