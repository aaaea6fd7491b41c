// Package acmetest starts throw-away certificate-authority infrastructure
// for tests: a Pebble ACME server (Let's Encrypt's test CA, built from the
// module proxy as a Go tool pinned in tools/pebble.mod, so the product's
// go.mod does not carry it) and a bind9 name server that takes RFC 2136
// updates signed with TSIG. Each instance listens on free loopback ports,
// keeps its files in the test's temporary directory and is stopped when
// the test ends; nothing touches a system-wide service or configuration.
//
// It owns nothing but test fixtures. Tests that need it call
// RequireServers first, which skips them under -short: the servers take a
// second or two to start.
package acmetest
