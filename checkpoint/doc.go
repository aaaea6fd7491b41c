// Package checkpoint makes csrd's audit log tamper-evident against anyone
// who can write its database but does not hold its HSM token: it signs
// checkpoints of the hash chain with the token's audit key (hsm.AuditKey)
// and checks them against public keys an operator pinned.
//
// The chain (store/audit.go) links every row to the one before by SHA-256,
// but anyone can recompute SHA-256. A checkpoint is an ECDSA P-256
// signature, made inside the token, over (key id, node, last row id, last
// row hash, time); because each row's hash covers its predecessor's, it
// fixes every row up to that id. A Checkpointer signs the head every
// Interval when rows were appended since its last checkpoint, every
// Heartbeat even when none were (so a verifier can tell a recent trail
// from an old copy), and once more at shutdown. Rows after the newest
// checkpoint are covered only by the chain: that is the unsigned window,
// at most Interval long while the token is reachable. While it is not,
// checkpoints wait and the chain goes on; Verify reports the span no
// checkpoint covers.
//
// Verify trusts a checkpoint only under a pinned key: the key recorded
// beside each checkpoint is a convenience a database writer could replace
// with one of their own. Several csrd nodes sharing a database each sign
// with their own token's key; Verify takes the set of pinned keys and
// names the checkpoints made by keys outside it, which it does not trust.
package checkpoint
