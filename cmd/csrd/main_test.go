package main

import (
	"fmt"
	"os"
	"testing"
)

// These tests run the real daemon: the test binary re-executes itself with
// envDaemon set and then runs main's run() with -config from envConfig.
const (
	envDaemon = "CSRD_TEST_RUN_DAEMON"
	envConfig = "CSRD_TEST_CONFIG"
)

func TestMain(m *testing.M) {
	if os.Getenv(envDaemon) != "" {
		if err := run([]string{"-config", os.Getenv(envConfig)}); err != nil {
			fmt.Fprintln(os.Stderr, "csrd:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
