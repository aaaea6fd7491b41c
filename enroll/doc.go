// Package enroll owns certificate enrollment and renewal with the CAs of
// csrd's configuration (cas:): Keyfactor's Enrollment/CSR for a key csrd
// holds pending, the ACME order persisted so a restart resumes it, the
// issued certificate married to the key exactly as Certificates/Import does
// (lifecycle.Import), and after that the certificate's life: renewal
// before expiry with a new key in the token (decided again under the
// policy in force, ordered with ARI's "replaces"), the deploy hook, the old
// key's retirement after expiry, revocation when a key is retired early,
// and the metrics of all this.
//
// Its state lives in the store (accounts, orders, renewals): every step is
// recorded before the next one is taken, a renewal is claimed with a
// compare-and-set, and the background loop (Run) picks up whatever a
// restart left open. The CA protocol is package acmeca's; the keys and
// their records are package lifecycle's. A CA that is down or refuses
// fails the one enrollment, never csrd's start.
package enroll
