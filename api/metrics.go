package api

import (
	"context"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/store"
)

// MetricsSources are what the gauges read at scrape time; nil fields are
// left out.
type MetricsSources struct {
	Sessions func() hsm.SessionStats
	// Records counts key records by state (store.Store.CountByState).
	Records func(ctx context.Context) (map[store.State]int, error)
	// AuditRows counts audit rows (store.Store.CountAudit).
	AuditRows func(ctx context.Context) (int64, error)
}

// Metrics are csrd's Prometheus metrics, on a registry of their own (no
// global state), served at /metrics.
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

// NewMetrics registers every metric.
func NewMetrics(src MetricsSources) *Metrics {
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
	return m
}

// watchGenerations exposes the Generate limiter (limit.go). A Metrics shared
// by several servers (tests) keeps the first one's.
func (m *Metrics) watchGenerations(l *limiter) {
	if l == nil {
		return
	}
	for _, g := range []struct {
		name, help string
		f          func() float64
	}{
		{"csrd_generations_in_flight", "Key generations holding a slot (limits.max_generations).", func() float64 { return float64(l.InFlight()) }},
		{"csrd_generations_waiting", "Generate requests waiting for a slot.", func() float64 { return float64(l.Waiting()) }},
	} {
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

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() echo.HandlerFunc {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return echo.WrapHandler(h)
}

func (m *Metrics) request(method, route string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route, method).Observe(d.Seconds())
}

// routeLabel names the matched route as registered (canonical spelling,
// path parameters as :id) so label values stay few; anything unmatched is
// "unmatched" and odd methods are "other".
func (s *Server) routeLabel(c echo.Context) (method, route string) {
	method = c.Request().Method
	switch method {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
	default:
		method = "other"
	}
	if r, ok := s.canonical[c.Path()]; ok {
		return method, r
	}
	return method, "unmatched"
}

func (m *Metrics) pkcs11Error(code string)   { m.pkcs11Errors.WithLabelValues(code).Inc() }
func (m *Metrics) authFailure(reason string) { m.authFailures.WithLabelValues(reason).Inc() }
func (m *Metrics) auditFailure()             { m.auditFailures.Inc() }

// ObserveKeyGeneration records one key pair generation.
func (m *Metrics) ObserveKeyGeneration(keyType string, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.keygen.WithLabelValues(keyType, result).Observe(d.Seconds())
}
