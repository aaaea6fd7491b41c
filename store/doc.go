// Package store owns csrd's database — SQLite (a file, the default) or
// PostgreSQL (a postgres:// URL, for several csrd nodes sharing one record
// space): the schema and its embedded, versioned migrations, the key
// records that marry a token key to the certificate the CA later returns,
// the states a record may be in, the queries over them, the audit chain,
// and backups of a SQLite database. It never calls the HSM; ordering store
// and token steps so that a crash is repairable is the job of package
// lifecycle.
//
// # Record states
//
// Every key generated on the token has exactly one record. Its state moves
// only along these edges (see [State.CanTransition]):
//
//	generating ──► pending ──► married ──► retired
//	     │            │  │         │
//	     ▼            │  ▼         │
//	   failed         │ deleted    │
//	                  ▼            │
//	                 lost ◄────────┘
//
// That is: generating → pending → married, pending → deleted,
// generating → failed, pending|married → lost (the key vanished from the
// token; found by reconcile) and married → retired (the key was destroyed at
// the end of its certificate's life; see retire.go). failed, deleted, lost
// and retired are terminal.
//
// A record is inserted as generating before the key exists on the token, so
// a crash between the two is visible in the database; [Store.BeginKey] does
// that and derives the token label from the record id in the same
// transaction. Transitions are compare-and-set updates (UPDATE ... WHERE
// state IN (...)): a record in an unexpected state yields an error matching
// [ErrConflict], an unknown id one matching [ErrNotFound].
//
// A record of a hybrid CSR also names its alternative key (see
// [AltStorage]): in the token under KeyLabel+[AltLabelSuffix] with its own
// CKA_ID, or as a sealed seed stored by [Store.CompleteHybridKey] and erased
// by [Store.ClearSealedSeed].
//
// # Intents
//
// A token operation on an existing key (destroying it, writing its
// certificate next to it) is committed as the record's Intent before the
// token is touched and cleared in the transaction that records the outcome
// (see intent.go). A crash in between leaves the intent for reconciliation
// to finish. A record with an intent is not offered as a pending CSR and
// refuses other operations with a [BusyError] (matches [ErrConflict]).
//
// # Audit log
//
// The audit table is an append-only hash chain (audit.go); a successful
// Generate appends its row in the transaction that makes the record
// pending. audit_checkpoints holds signatures over the chain's head made
// in an HSM token (package checkpoint signs and checks them; the store
// keeps them and, in VerifyAudit, reads rows, sequence and checkpoints in
// one snapshot and marks each checkpoint whose row is still as signed).
//
// # Token profiles
//
// token_profiles keeps each token's profile as last learned (profiles.go),
// one row per token label and serial, replaced when learned again. The
// document is hsm.Profile's JSON; the store checks only that it is JSON,
// and csrd never reads it back.
//
// # Storage
//
// A SQLite database is a file (never ":memory:": records must survive
// restarts) in WAL mode with a busy timeout, foreign keys on and
// synchronous=NORMAL. SQLite allows one writer at a time, so writes go
// through a dedicated pool of exactly one connection whose transactions
// begin IMMEDIATE; reads use a separate, query-only pool and never wait for
// the writer. Every Store holds a shared flock on the file, which Restore
// takes exclusively (lock.go).
//
// PostgreSQL runs the same code and the same SQL: one Store type, one
// writer goroutine per process that group-commits, the statements written
// once in the subset both share and rewritten for PostgreSQL as they reach
// pgx (rebind.go); what truly differs is named in dialect.go (the audit
// sequence, migrations' lock, retries). Two implementations behind the
// consumers' interfaces would have duplicated every statement and let the
// two drift; a contract test suite (backend_test.go) runs against both.
// Several processes may share one PostgreSQL database: compare-and-set
// updates under READ COMMITTED serialise on the row, and the audit chain's
// sequence row serialises appends (see dialect.auditSeqTxSQL). A group
// commit that loses its connection or meets a serialization failure
// before COMMIT is tried again, a bounded number of times.
//
// Errors from either database are classified once, here: a full disk
// matches [ErrStorageFull]; I/O, corruption, an unreachable or read-only
// server match [ErrUnavailable]; lock contention past the busy timeout, a
// deadlock or serialization failure match [ErrBusy].
//
// # Migrations
//
// migrations/NNNN_name.sql (SQLite) and migrations/postgres/NNNN_name.sql
// (PostgreSQL, the same versions) are applied in version order at [Open], each in
// its own transaction together with its row in schema_migrations, so a
// half-applied migration is impossible and re-opening is a no-op. Version
// numbers may have gaps (they are assigned to parallel work that merges in
// any order); each version not yet recorded is applied. A database that
// records a version this binary lacks is refused rather than guessed at. Later schema
// changes are new files; existing ones are never edited.
package store
