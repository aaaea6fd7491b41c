package api_test

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

// The whole stack under test: a real SoftHSM token in a temp dir, a real
// SQLite file, the real echo server behind httptest. One per test binary,
// because a PKCS#11 module is initialised once per process.
var (
	testToken *hsm.Token
	testStore *store.Store
	testHSM   *fixture.Token
	testSrv   *httptest.Server
	tmpDir    string
	// testSvc and testLog build further servers (auth, TLS) on the same
	// token and database.
	testSvc *lifecycle.Service
	testLog zerolog.Logger
)

func TestMain(m *testing.M) {
	os.Exit(fixture.Main(m, "api", []string{"csrd-api-test"}, setUp))
}

func setUp(s *fixture.Suite) error {
	var err error
	tmpDir, testHSM = s.Dir, s.Token
	tok := s.Token
	ctx := context.Background()
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel)
	if os.Getenv("CSRD_TEST_LOG") != "" {
		log = log.Level(zerolog.DebugLevel)
	}
	testToken, err = hsm.Open(ctx, hsm.Config{
		Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN,
		MaxSessions: 8, PoolWaitTimeout: time.Minute,
	}, log)
	if err != nil {
		return err
	}
	s.Defer(func() { testToken.Close() })
	testStore, err = store.Open(ctx, filepath.Join(tmpDir, "csrd.db"))
	if err != nil {
		return err
	}
	s.Defer(func() { testStore.Close() })
	testSvc, testLog = lifecycle.New(lifecycle.HSMToken{Token: testToken}, testStore, policy.Default(), log), log
	// The shared server runs without authentication (auth.mode none, as
	// on a loopback development setup); auth_test.go builds servers with.
	testSrv = httptest.NewServer(api.New(api.Options{
		BasePath: "/KeyfactorAPI", Log: log, Generator: testSvc, Pending: testSvc, Certificates: testSvc, Keys: testSvc,
		NoAuth: true, Audit: testStore,
	}))
	s.Defer(testSrv.Close)
	return nil
}
