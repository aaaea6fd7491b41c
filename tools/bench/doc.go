// Package bench measures csrd against the limit of the token it drives, side
// by side in one run on the same SoftHSM token: (a) a raw PKCS#11 loop that
// asks the token for exactly what csrd asks (hsm.GenerateTemplates, read the
// public key, sign once) and (b) the real csrd binary, end to end over HTTP on
// loopback, at the same concurrency. It owns the raw loop, the schedule of
// turns, the 10,000-key fill, the token-pool, failover and memory runs, and
// the Markdown/JSON report with its targets, which are data (targets.json).
// The client, the closed loop, the /proc and /metrics readers and the
// percentiles are package loadgen's, shared with the load generator.
//
// csrd runs as a subprocess so that its CPU time and peak RSS are its own
// (SoftHSM is a library: its work is inside whichever process calls it). The
// raw loop runs in this process, on its own sessions; while one side runs the
// other is idle. The HTTP client runs in this process too, on the cores csrd
// uses, and the raw loop has none: its CPU (getrusage) is reported per CSR
// and given back to csrd's side in the ratios (Measure.givenBack), with the
// ratio as measured beside them. The noise cells run the raw loop against
// itself with the same schedule, so a run carries its own measure of how far
// a ratio moves when nothing differs between the sides: P-256's for the fast
// key types, RSA-2048's own for RSA, whose one long turn per side moves with
// the luck of the prime search. The pool rows are compared with each other,
// so every pool's csrd runs at once and all their sides, with each pool's
// raw loop, take turns in every round (rotate), as the two sides of a cell
// do.
//
// Figures from one run are comparable with each other; across runs on a
// shared machine they vary by ±30%. Nothing here asserts timings: the smoke
// test only proves the program works and emits a valid report.
package bench
