package metrics

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/store"
)

// Sources are what the gauges read at scrape time; nil fields are left out.
type Sources struct {
	// Sessions reports the tokens' PKCS#11 sessions (SumSessions adds up
	// those of a pool).
	Sessions func() hsm.SessionStats
	// Records counts key records by state (store.Store.CountByState).
	Records func(ctx context.Context) (map[store.State]int, error)
	// AuditRows counts audit rows (store.Store.CountAudit).
	AuditRows func(ctx context.Context) (int64, error)
	// DB reports the database's write counters (store.Store.Stats).
	DB func() store.Stats
}

// Metrics are csrd's Prometheus metrics on a registry of their own.
type Metrics struct {
	reg           *prometheus.Registry
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	keygen        *prometheus.HistogramVec
	pkcs11Errors  *prometheus.CounterVec
	authFailures  *prometheus.CounterVec
	auditFailures prometheus.Counter
}

// Register adds another package's collector (enrollment's) to the registry.
func (m *Metrics) Register(c prometheus.Collector) error { return m.reg.Register(c) }

// scrapeTimeout bounds the database reads of one scrape.
const scrapeTimeout = 2 * time.Second

// New registers every metric.
func New(src Sources) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csrd_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "csrd_http_request_duration_seconds", Help: "HTTP request duration by route.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"route", "method"}),
		// Key generation on a token ranges from milliseconds (EC) to
		// minutes (RSA-8192 on SoftHSM), hence the wide buckets.
		keygen: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "csrd_key_generation_seconds", Help: "Key pair generation time in the token, by key type and result.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"key_type", "result"}),
		pkcs11Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csrd_pkcs11_errors_total", Help: "PKCS#11 errors answered to clients, by CKR code.",
		}, []string{"code"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csrd_auth_failures_total", Help: "Refused authentications by reason (no_credentials, bad_credentials, throttled).",
		}, []string{"reason"}),
		auditFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "csrd_audit_write_failures_total", Help: "Audit rows that could not be written (see the error log).",
		}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.keygen, m.pkcs11Errors, m.authFailures, m.auditFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.registerSources(src)
	return m
}

func (m *Metrics) registerSources(src Sources) {
	if src.Sessions != nil {
		for _, g := range []struct {
			name, help string
			f          func(hsm.SessionStats) int
		}{
			{"csrd_hsm_sessions_max", "PKCS#11 sessions in crypto11's pool.", func(s hsm.SessionStats) int { return s.Pool }},
			{"csrd_hsm_sessions_in_use", "PKCS#11 pool sessions held by an operation.", func(s hsm.SessionStats) int { return s.InUse }},
			{"csrd_hsm_sessions_waiting", "Operations waiting for a PKCS#11 session.", func(s hsm.SessionStats) int { return s.Waiting }},
			{"csrd_hsm_raw_sessions_in_use", "Sessions open on csrd's own PKCS#11 handle (lookups, ping, EdDSA/ML-DSA).", func(s hsm.SessionStats) int { return s.Raw }},
			{"csrd_hsm_raw_sessions_max", "Sessions csrd's own PKCS#11 handle may open.", func(s hsm.SessionStats) int { return s.RawMax }},
		} {
			f := g.f
			m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: g.name, Help: g.help},
				func() float64 { return float64(f(src.Sessions())) }))
		}
	}
	if src.Records != nil {
		m.reg.MustRegister(&recordsCollector{count: src.Records})
	}
	if src.DB != nil {
		m.registerDB(src.DB)
	}
	if src.AuditRows != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "csrd_audit_rows", Help: "Rows in the audit log.",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
			defer cancel()
			n, err := src.AuditRows(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		}))
	}
}

// registerDB exposes the database's write counters: commits per request
// and the share of a request's time spent waiting for its writes follow
// from them and the request metrics.
func (m *Metrics) registerDB(db func() store.Stats) {
	for _, c := range []struct {
		name, help string
		f          func(store.Stats) float64
	}{
		{"csrd_db_writes_total", "Write transactions requested of the database (parts of group commits).",
			func(s store.Stats) float64 { return float64(s.Writes) }},
		{"csrd_db_commits_total", "Group commits the database committed.", func(s store.Stats) float64 { return float64(s.Commits) }},
		{"csrd_db_write_wait_seconds_total", "Time requests waited for their database writes, queueing included.",
			func(s store.Stats) float64 { return s.WriteWait.Seconds() }},
	} {
		f := c.f
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help},
			func() float64 { return f(db()) }))
	}
}

// WatchGenerations exposes the Generate limiter: the generations holding a
// slot and the requests waiting for one. A Metrics shared by several
// servers (tests) keeps the first one's.
func (m *Metrics) WatchGenerations(inFlight, waiting func() float64) {
	m.gauges(
		gauge{"csrd_generations_in_flight", "Key generations holding a slot (limits.max_generations).", inFlight},
		gauge{"csrd_generations_waiting", "Generate requests waiting for a slot.", waiting},
	)
}

// WatchCheckpoints exposes how far the audit log's signed checkpoints
// reach: the rows only the hash chain covers, and when the last checkpoint
// was made (Unix seconds; 0 before the first). An alert on either catches
// checkpoints that stopped (the audit key's token away). A Metrics shared
// by several servers (tests) keeps the first one's.
func (m *Metrics) WatchCheckpoints(unsigned, lastUnix func() float64) {
	m.gauges(
		gauge{"csrd_audit_unsigned_rows", "Audit rows appended after the last signed checkpoint (as of the last attempt).", unsigned},
		gauge{"csrd_audit_last_checkpoint_timestamp_seconds", "When the last audit checkpoint was signed (Unix time; 0 before the first).", lastUnix},
	)
}

// gauge is a gauge read from f at each scrape.
type gauge struct {
	name, help string
	f          func() float64
}

// gauges registers gs; a name already registered keeps its first reader.
func (m *Metrics) gauges(gs ...gauge) {
	for _, g := range gs {
		_ = m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: g.name, Help: g.help}, g.f))
	}
}

// recordsCollector reports key records per state in one query per scrape;
// csrd_key_records{state="pending"} is the pending count.
type recordsCollector struct {
	count func(ctx context.Context) (map[store.State]int, error)
}

var recordsDesc = prometheus.NewDesc("csrd_key_records", "Key records by state (pending: CSRs waiting for a certificate).", []string{"state"}, nil)

func (r *recordsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- recordsDesc }

func (r *recordsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	n, err := r.count(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(recordsDesc, err)
		return
	}
	for _, st := range store.States() {
		ch <- prometheus.MustNewConstMetric(recordsDesc, prometheus.GaugeValue, float64(n[st]), string(st))
	}
}

// Handler serves the registry in the Prometheus text format. A gauge whose
// source fails is left out of that scrape; the rest is served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Request records one answered HTTP request; route is the route as
// registered (few label values), method one of the standard ones or
// "other".
func (m *Metrics) Request(method, route string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route, method).Observe(d.Seconds())
}

// PKCS11Error counts a PKCS#11 error answered to a client, by CKR name.
func (m *Metrics) PKCS11Error(code string) { m.pkcs11Errors.WithLabelValues(code).Inc() }

// AuthFailure counts a refused authentication: no_credentials,
// bad_credentials or throttled.
func (m *Metrics) AuthFailure(reason string) { m.authFailures.WithLabelValues(reason).Inc() }

// AuditFailure counts an audit row that could not be written.
func (m *Metrics) AuditFailure() { m.auditFailures.Inc() }

// ObserveKeyGeneration records one key generation in a token, by key type
// ("RSA-2048", "ML-DSA-65-sealed", ...) and result ("ok" or "error").
func (m *Metrics) ObserveKeyGeneration(keyType string, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.keygen.WithLabelValues(keyType, result).Observe(d.Seconds())
}

// SessionCounter is a token that counts its PKCS#11 sessions (*hsm.Token).
type SessionCounter interface {
	SessionStats() hsm.SessionStats
}

// SumSessions is a Sources.Sessions that adds up the sessions of every
// token of a pool.
func SumSessions[T SessionCounter](toks []T) func() hsm.SessionStats {
	return func() hsm.SessionStats {
		var sum hsm.SessionStats
		for _, t := range toks {
			s := t.SessionStats()
			sum.Pool += s.Pool
			sum.InUse += s.InUse
			sum.Waiting += s.Waiting
			sum.Raw += s.Raw
			sum.RawMax += s.RawMax
		}
		return sum
	}
}
