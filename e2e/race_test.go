//go:build race

package e2e

// raceEnabled: the tests run with -race, so the daemon is built with it too
// and a data race under real concurrent traffic fails the test.
const raceEnabled = true
