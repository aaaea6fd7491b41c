// Package acmeca speaks ACME (RFC 8555) to one certificate authority on
// csrd's behalf: the account (its key a crypto.Signer that stays in the
// HSM, registered with External Account Binding where the CA requires it),
// orders for a CSR csrd made, the challenges that prove control of the
// names (none, http-01 through a plain-HTTP responder, dns-01 through RFC
// 2136 updates signed with TSIG), the issued chain checked, ACME Renewal
// Information (RFC 9773: renewalInfo and an order's "replaces") and
// revocation.
//
// It builds on golang.org/x/crypto/acme, which takes any crypto.Signer as
// the account key; what that package lacks (the order's "replaces" and
// "profile" fields in one request, finalize without its one-second poll,
// renewalInfo) is a few signed requests of its own (jws.go, ari.go).
//
// It owns no state beyond a CA's connection: where the account key lives
// and which orders exist is the caller's business (package enroll), given
// to it through Account. Errors say whether the CA could not be reached
// (ErrUnavailable: retry later) or refused (ErrRefused), with the CA's
// problem detail in the message.
package acmeca
