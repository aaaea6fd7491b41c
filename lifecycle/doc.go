// Package lifecycle owns csrd's use cases and the key record state machine:
// Generate (decide, record, create the key in the token, build and sign the
// CSR, complete the record), the pending list, Delete, Import (marrying the
// issued certificate to its key), the Recover refusal, operator key records,
// and Reconcile (finish what a crash interrupted; find lost keys and orphan
// token objects).
//
// Its main job is the crash-safe ordering between the database and the
// token. A key is never created in the token before a record that names it
// (label and CKA_ID) is committed as "generating"; only when the CSR is
// built is the record moved to "pending". Any failure after the key exists
// destroys the key and marks the record "failed". If the process dies in
// between, the record is still "generating" and Reconcile — run at start-up
// — destroys whatever key the token holds under that label and marks the
// record "failed". So the token never holds a csrd key that the database
// does not know about, and the database never claims a key that is not
// there.
//
// Delete and Import follow the same rule with a record intent: the intent
// (and, for Import, the certificate) is committed before the token changes
// and cleared with the outcome, so Reconcile can finish either. Reconcile's
// own acts on key material are audited like a request's: each row commits
// with the record's outcome, or precedes the token change when no record
// changes.
//
// A hybrid request has two keys: the primary one in the token and an ML-DSA
// alternative, in the token (PKCS#11 3.2) or as a token-sealed seed. The
// record names both before either exists, and every clean-up path —
// Generate's failure path, Reconcile and Delete — goes through
// destroyKeyMaterial, the one function that knows what key material a
// record has (primary pair, alternative pair or sealed seed).
//
// The TokenPool places new keys on its tokens, and a token takes new keys
// only once the records on it are reconciled: AdmitConnected at start-up,
// AdmitLate for tokens that connect later. States and Ping say, for
// readiness, what each token is doing.
//
// lifecycle declares the narrow interfaces it needs: Token (HSMToken adapts
// *hsm.Token; the tests use a fake that fails on demand) and one records
// interface per use case (Records is their union, *store.Store satisfies
// it). It does not parse HTTP or encode JSON for clients.
package lifecycle
