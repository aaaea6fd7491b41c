// Package metrics owns csrd's Prometheus registry and its instruments: HTTP
// requests by route, method and status and their duration; key generation
// time in the token by key type and result; PKCS#11 errors answered to
// clients by CKR code; refused authentications and failed audit writes;
// and gauges read at scrape time — the tokens' sessions, key records by
// state, audit rows, the Generate limiter — besides the Go runtime's and
// the process's own.
//
// The registry is the process's own, not the global default: no package
// registers anything behind csrd's back, and tests make as many as they
// need. api records into it and serves it at /metrics (Handler);
// lifecycle reports key generation times through its KeygenObserver. The
// metric names and labels are part of csrd's interface to its operators
// and change only with the documentation.
package metrics
