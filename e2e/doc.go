// Package e2e proves csrd's reliability promises end to end, against
// the real daemon: whatever happens, no key is created that csrd does not
// know about, no record points at a key that does not exist, no answered
// request is lost, and bad conditions give clear 5xx answers, never a crash.
// It also runs csrd as systemd does: the notify protocol, SIGTERM with work
// in flight, SIGHUP reloading TLS and policy.
//
// It holds only tests, and every one of them runs the csrd binary, so
// `go test -short` skips them all. TestMain gets the binary from
// fixture.CSRD (the one `make test` built, or a build of its own; with the
// race detector when the tests run with it) and makes a throw-away SoftHSM
// configuration; each test starts the binary as a subprocess on a token of
// its own and a temp SQLite file, drives it over loopback HTTP and injects
// faults from outside the process: SIGKILL at random moments, a full or
// locked database, a vanished token, load. After every fault the
// invariants are checked by reading the token (through package hsm) and the
// database (through package store) directly.
package e2e
