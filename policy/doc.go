// Package policy decides what csrd may generate. It owns the policy model —
// today the built-in default key policy (which key algorithms and sizes are
// allowed), later system-wide settings, templates and enrollment patterns —
// and the normalisation of what a client asked for (KeyType, KeyLength,
// Curve as Keyfactor clients send them) into one canonical KeySpec.
//
// The package is pure: Decide takes a request and returns a Decision or
// typed Violations, with no I/O, no HTTP and no SQL, so every rule can be
// tested as a table and the same decision can be re-derived offline. Only
// the api package turns a Violation into a status code.
package policy
