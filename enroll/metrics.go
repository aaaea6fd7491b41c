package enroll

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/csrd/csrd/acmeca"
)

// Metrics are enrollment's Prometheus metrics; the Service is their
// Collector (register it on csrd's registry).
type Metrics struct {
	records     KeyReads
	enrollments *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	renewals    *prometheus.CounterVec
	expiry      *prometheus.Desc
}

// expiryBuckets are the upper bounds, in days, of the days-to-expiry
// gauge's buckets; a certificate counts in the first that holds it.
var expiryBuckets = []struct {
	label string
	days  float64
}{{"expired", 0}, {"1", 1}, {"7", 7}, {"30", 30}, {"90", 90}, {"+Inf", 1e9}}

func newMetrics(records KeyReads) *Metrics {
	return &Metrics{
		records: records,
		enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csrd_enrollments_total", Help: "Enrollment/CSR calls by CA and outcome (issued, pending, refused, unavailable, error).",
		}, []string{"ca", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "csrd_enrollment_seconds", Help: "Time an Enrollment/CSR call took, by CA (issued ones).",
			Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"ca"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csrd_renewals_total", Help: "Renewal attempts by outcome: done, failed (retried), refused (the new key, by the policy in force or the token).",
		}, []string{"result"}),
		expiry: prometheus.NewDesc("csrd_certificates_expiring",
			"Married certificates by days to expiry: the smallest bound (days) not below it; expired ones under \"expired\".", []string{"within_days"}, nil),
	}
}

func (m *Metrics) enrolled(ca string, res *Result, err error, d time.Duration) {
	result := "error"
	switch {
	case err == nil && res.Disposition == Issued:
		result = "issued"
		m.duration.WithLabelValues(ca).Observe(d.Seconds())
	case err == nil:
		result = "pending"
	case errors.Is(err, acmeca.ErrRefused), errors.Is(err, ErrInvalid), errors.Is(err, ErrConflict):
		result = "refused"
	case errors.Is(err, acmeca.ErrUnavailable):
		result = "unavailable"
	}
	m.enrollments.WithLabelValues(ca, result).Inc()
}

func (m *Metrics) renewed(result string) { m.renewals.WithLabelValues(result).Inc() }

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.enrollments.Describe(ch)
	m.duration.Describe(ch)
	m.renewals.Describe(ch)
	ch <- m.expiry
}

// Collect implements prometheus.Collector; the expiry gauge is read from
// the database at scrape time.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.enrollments.Collect(ch)
	m.duration.Collect(ch)
	m.renewals.Collect(ch)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	exp, err := m.records.MarriedNotAfter(ctx)
	if err != nil {
		return
	}
	counts := make([]int, len(expiryBuckets))
	now := time.Now()
	for _, t := range exp {
		days := t.Sub(now).Hours() / 24
		for i, b := range expiryBuckets {
			if days <= b.days || i == len(expiryBuckets)-1 {
				counts[i]++
				break
			}
		}
	}
	for i, b := range expiryBuckets {
		ch <- prometheus.MustNewConstMetric(m.expiry, prometheus.GaugeValue, float64(counts[i]), b.label)
	}
}

// Metrics returns the service's metrics, a prometheus.Collector.
func (s *Service) Metrics() *Metrics { return s.metrics }
