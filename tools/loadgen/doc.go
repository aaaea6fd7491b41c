// Package loadgen drives a running csrd over its Keyfactor API and
// measures what happened. It holds the tools' one of each measurement
// primitive, which the benchmark (tools/bench) builds on as well:
//
//   - Client: Generate, Delete and Import requests over keep-alive
//     connections, each answer's shape checked (Answer, Answer.Failure),
//     and Metrics, which reads csrd's /metrics with Prometheus's own text
//     parser;
//   - Loop: the closed-loop runner (warm-up, a measurement window, a drain);
//   - the /proc reader: a process's CPU time, RSS, peak RSS and threads,
//     and this process's CPU from getrusage;
//   - Percentiles: the one percentile function.
//
// Run is the load run on those parts: concurrent Generate clients with a
// weighted key mix (and, with churn, deleting each key again), the status
// histogram, transport errors, latency percentiles, the ids of every
// accepted request (VerifyRecords proves none was lost) and the daemon's
// memory over the run. tools/cmd/csrd-load wires it to flags; the daemon's
// end-to-end tests use it for their traffic.
//
// It knows the wire format only: of csrd's internals it imports just the
// store's record type, for VerifyRecords (which takes a consumer-declared
// interface that *store.Store satisfies).
package loadgen
