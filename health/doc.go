// Package health owns csrd's readiness checks: a named set of probes (HSM
// session usable, database writable, policy loaded) run together under a
// deadline, with a short-lived cache so that load balancers polling /readyz
// cannot turn into a flood of token sessions. The same Checker answers the
// HTTP /readyz endpoint and gates the systemd watchdog, so "ready" means one
// thing everywhere.
//
// Reports name each check and say ok or failing; the errors are kept for the
// log and never shown to HTTP clients.
package health
