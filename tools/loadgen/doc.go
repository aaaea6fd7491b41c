// Package loadgen drives a running csrd with concurrent Keyfactor Generate
// clients over HTTP and measures what happened: requests sent, the status
// histogram, transport errors, latency percentiles, the ids of every
// accepted request (so a caller can prove none was lost) and the daemon's
// resident memory over the run. cmd/csrd-load wires it to flags; the
// daemon tests use it for the short load run in `make test`.
//
// It knows the wire format only: it imports nothing of csrd's internals
// except what it needs to verify records afterwards (VerifyRecords takes a
// consumer-declared interface that *store.Store satisfies).
package loadgen
