// Package config owns csrd's typed configuration: loading the YAML file,
// applying defaults, validating, and reading secrets (the HSM PIN) from a
// file or a systemd credential. It is shared by csrd and csrctl and holds no
// global state.
//
// Loading happens in explicit steps — Load (parse, strict keys) → defaults →
// overrides from flags → Validate — so that every value the daemon runs with
// is visible in one struct and checked in one place. The PIN itself is never
// part of the struct that is parsed from YAML, printed or logged: only the
// path of the file that holds it.
package config
