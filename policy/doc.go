// Package policy decides what csrd may generate. It owns the policy model —
// system-wide settings, templates (with what their CA supports) and
// enrollment patterns, as Keyfactor Command models them — parsing a policy
// file's bytes into an immutable Engine (Parse; the built-in default is
// Default), and the normalisation of what a client asked for (KeyType,
// KeyLength, Curve as Keyfactor clients send them) into one canonical
// KeySpec.
//
// Engine.Decide resolves the enrollment pattern (EnrollmentPatternId, else
// the Template's default pattern, else the configured default), intersects
// the system-wide, pattern and template key rules, fills in subject
// defaults and checks regexes, wildcards, RFC enforcement and the SAN
// limit. It returns a Decision (recorded with the key) or an *Error with
// every Violation, each naming its rule and pattern.
//
// The package is pure: no I/O, no HTTP, no SQL. Reading the file is the
// caller's job (config.LoadPolicy), so every rule can be tested as a table
// and a decision re-derived offline from the recorded file hash. Reloader
// swaps Engines atomically for SIGHUP reloads. Only the api package turns a
// Violation into a status code.
package policy
