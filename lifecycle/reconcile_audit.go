package lifecycle

import (
	"encoding/hex"
	"io"

	"github.com/csrd/csrd/store"
)

// The audit operations of reconciliation's own acts on key material and
// the records it gives up on. Each row commits with the record's change
// where there is one (the record failed, deleted, married or lost) and is
// written before the token is touched where there is none (an orphan
// destroyed, a certificate object written again), so reconciliation
// destroys, binds or writes off nothing without its row.
const (
	// AuditReconcileDestroy: key material destroyed, of an interrupted
	// generate (the record failed), an interrupted delete (the record
	// deleted) or an orphan.
	AuditReconcileDestroy = "reconcile_destroy"
	// AuditReconcileRepair: a certificate bound to its key in the token,
	// finishing an interrupted import (the record married) or writing a
	// married record's missing certificate object again.
	AuditReconcileRepair = "reconcile_repair"
	// AuditReconcileLost: a record marked lost, its key pair no longer
	// whole in the token (removed by someone else, or an interrupted
	// import whose key vanished).
	AuditReconcileLost = "reconcile_lost"
)

// ReconcileActor is the actor, and source, of the audit rows of csrd's own
// reconciliation: at start-up and when a token is admitted.
const ReconcileActor = "csrd"

// reconciler returns who reconciles, for the audit rows: who as given (its
// Actor, AuthMethod, Source and RequestID), csrd itself when who has no
// Actor, and a fresh request id shared by this run's rows when who has none.
func (s *Service) reconciler(who store.AuditEntry) store.AuditEntry {
	out := store.AuditEntry{Actor: who.Actor, AuthMethod: who.AuthMethod, Source: who.Source, RequestID: who.RequestID}
	if out.Actor == "" {
		out.Actor, out.AuthMethod, out.Source = ReconcileActor, "", ReconcileActor
	}
	if out.RequestID == "" {
		var b [8]byte
		_, _ = io.ReadFull(s.rand, b[:])
		out.RequestID = "reconcile-" + hex.EncodeToString(b[:])
	}
	return out
}

// reconcileRow is the audit row of one act of reconciliation by who.
func reconcileRow(who store.AuditEntry, op, detail string) *store.AuditEntry {
	row := who
	row.Operation, row.Result, row.Detail = op, store.AuditOK, detail
	return &row
}
