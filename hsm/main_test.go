package hsm

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/fixture"
)

const (
	testLabel  = "csrd-hsm-test"
	otherLabel = "csrd-hsm-other" // second token in the same config, for Open tests
)

// testTok is the process's one open Token (hsm allows one per token per
// process), shared by the tests; testHSM describes the SoftHSM fixture.
var (
	testTok *Token
	testHSM *fixture.Token
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envRecoverChild); dir != "" {
		// Child of TestReconnect: a process of its own, so that its Token is
		// the module's only user and can C_Finalize it (recover_test.go).
		if err := recoverChild(dir); err != nil {
			fmt.Fprintln(os.Stderr, "recover child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(fixture.Main(m, "hsm", []string{testLabel, otherLabel}, func(s *fixture.Suite) error {
		testHSM = s.Token
		var err error
		if testTok, err = Open(context.Background(), testConfig(testLabel, testHSM.PIN), zerolog.Nop()); err != nil {
			return fmt.Errorf("open test token: %w", err)
		}
		s.Defer(func() { testTok.Close() })
		s.Defer(stopMatrix)
		return nil
	}))
}

// testConfig uses 4 sessions (3 for work) so the concurrency test queues.
func testConfig(label, pin string) Config {
	return Config{
		Module:          testHSM.Module,
		TokenLabel:      label,
		PIN:             pin,
		MaxSessions:     4,
		PoolWaitTimeout: time.Minute,
	}
}
