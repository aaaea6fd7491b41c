package metrics

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/store"
)

// samples gathers m's csrd_ metrics as "name{label=value,...}" → value
// (counters, gauges, and histograms by their sample count), and the gather
// error, if any.
func samples(t *testing.T, m *Metrics) (map[string]float64, error) {
	t.Helper()
	fams, err := m.reg.Gather()
	out := map[string]float64{}
	for _, f := range fams {
		if !strings.HasPrefix(f.GetName(), "csrd_") {
			continue
		}
		for _, s := range f.GetMetric() {
			var labels []string
			for _, l := range s.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := f.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch {
			case s.GetCounter() != nil:
				out[key] = s.GetCounter().GetValue()
			case s.GetGauge() != nil:
				out[key] = s.GetGauge().GetValue()
			case s.GetHistogram() != nil:
				out[key] = float64(s.GetHistogram().GetSampleCount())
			}
		}
	}
	return out, err
}

var errScrape = errors.New("database gone")

// TestRecordsAndGauges: what each instrument and source shows, names and
// labels included — they are operators' interface and must not drift.
func TestRecordsAndGauges(t *testing.T) {
	sessions := hsm.SessionStats{Pool: 7, InUse: 2, Waiting: 1, Raw: 3, RawMax: 9}
	counts := map[store.State]int{store.StatePending: 4, store.StateMarried: 1}
	tests := []struct {
		name    string
		src     Sources
		record  func(*Metrics)
		want    map[string]float64
		absent  []string
		gathers bool // Gather reports an error (a source failed), the rest is still served
	}{{
		name: "requests, errors, refusals and key generations",
		record: func(m *Metrics) {
			m.Request("POST", "/KeyfactorAPI/CSRGeneration/Generate", 200, time.Millisecond)
			m.Request("POST", "/KeyfactorAPI/CSRGeneration/Generate", 200, time.Millisecond)
			m.Request("GET", "unmatched", 404, time.Millisecond)
			m.PKCS11Error("CKR_DEVICE_REMOVED")
			m.AuthFailure("throttled")
			m.AuditFailure()
			m.ObserveKeyGeneration("ECDSA-P-256", time.Millisecond, nil)
			m.ObserveKeyGeneration("ML-DSA-65-sealed", time.Millisecond, errScrape)
		},
		want: map[string]float64{
			`csrd_http_requests_total{method=POST,route=/KeyfactorAPI/CSRGeneration/Generate,status=200}`: 2,
			`csrd_http_requests_total{method=GET,route=unmatched,status=404}`:                             1,
			`csrd_http_request_duration_seconds{method=POST,route=/KeyfactorAPI/CSRGeneration/Generate}`:  2,
			`csrd_pkcs11_errors_total{code=CKR_DEVICE_REMOVED}`:                                           1,
			`csrd_auth_failures_total{reason=throttled}`:                                                  1,
			`csrd_audit_write_failures_total{}`:                                                           1,
			`csrd_key_generation_seconds{key_type=ECDSA-P-256,result=ok}`:                                 1,
			`csrd_key_generation_seconds{key_type=ML-DSA-65-sealed,result=error}`:                         1,
		},
		absent: []string{`csrd_hsm_sessions_max{}`, `csrd_audit_rows{}`, `csrd_key_records{state=pending}`},
	}, {
		name: "sources read at scrape time",
		src: Sources{
			Sessions:  func() hsm.SessionStats { return sessions },
			Records:   func(context.Context) (map[store.State]int, error) { return counts, nil },
			AuditRows: func(context.Context) (int64, error) { return 12, nil },
		},
		want: map[string]float64{
			`csrd_hsm_sessions_max{}`:            7,
			`csrd_hsm_sessions_in_use{}`:         2,
			`csrd_hsm_sessions_waiting{}`:        1,
			`csrd_hsm_raw_sessions_in_use{}`:     3,
			`csrd_hsm_raw_sessions_max{}`:        9,
			`csrd_key_records{state=pending}`:    4,
			`csrd_key_records{state=married}`:    1,
			`csrd_key_records{state=deleted}`:    0, // every state, 0 when it has none
			`csrd_audit_rows{}`:                  12,
			`csrd_key_records{state=failed}`:     0,
			`csrd_key_records{state=lost}`:       0,
			`csrd_key_records{state=generating}`: 0,
		},
	}, {
		name: "failing sources",
		src: Sources{
			Records:   func(context.Context) (map[store.State]int, error) { return nil, errScrape },
			AuditRows: func(context.Context) (int64, error) { return 0, errScrape },
		},
		want:    map[string]float64{`csrd_audit_rows{}`: -1},
		absent:  []string{`csrd_key_records{state=pending}`},
		gathers: true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(tt.src)
			if tt.record != nil {
				tt.record(m)
			}
			got, err := samples(t, m)
			if (err != nil) != tt.gathers {
				t.Errorf("gather error %v, want one: %v", err, tt.gathers)
			}
			for name, v := range tt.want {
				if g, ok := got[name]; !ok || g != v {
					t.Errorf("%s = %v (present %v), want %v", name, g, ok, v)
				}
			}
			for _, name := range tt.absent {
				if _, ok := got[name]; ok {
					t.Errorf("%s exposed without its source", name)
				}
			}
		})
	}
}

// TestWatchGauges: the limiter's and the audit checkpoints' gauges; a
// second server sharing the Metrics keeps the first one's.
func TestWatchGauges(t *testing.T) {
	m := New(Sources{})
	m.WatchGenerations(func() float64 { return 3 }, func() float64 { return 5 })
	m.WatchGenerations(func() float64 { return 30 }, func() float64 { return 50 })
	m.WatchCheckpoints(func() float64 { return 7 }, func() float64 { return 1.8e9 })
	got, err := samples(t, m)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{`csrd_generations_in_flight{}`: 3, `csrd_generations_waiting{}`: 5,
		`csrd_audit_unsigned_rows{}`: 7, `csrd_audit_last_checkpoint_timestamp_seconds{}`: 1.8e9}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %v, want %v", name, got[name], v)
		}
	}
}

type counter hsm.SessionStats

func (c counter) SessionStats() hsm.SessionStats { return hsm.SessionStats(c) }

func TestSumSessions(t *testing.T) {
	tests := []struct {
		name string
		toks []counter
		want hsm.SessionStats
	}{
		{"none", nil, hsm.SessionStats{}},
		{"one", []counter{{Pool: 7, InUse: 1, Waiting: 2, Raw: 3, RawMax: 9}}, hsm.SessionStats{Pool: 7, InUse: 1, Waiting: 2, Raw: 3, RawMax: 9}},
		{"a pool", []counter{{Pool: 7, InUse: 1, Raw: 1, RawMax: 9}, {Pool: 3, Waiting: 4, Raw: 2, RawMax: 5}},
			hsm.SessionStats{Pool: 10, InUse: 1, Waiting: 4, Raw: 3, RawMax: 14}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SumSessions(tt.toks)(); got != tt.want {
				t.Errorf("sum %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestNames pins every csrd_ metric name: renaming one breaks operators'
// dashboards and alerts.
func TestNames(t *testing.T) {
	m := New(Sources{
		Sessions:  func() hsm.SessionStats { return hsm.SessionStats{} },
		Records:   func(context.Context) (map[store.State]int, error) { return nil, nil },
		AuditRows: func(context.Context) (int64, error) { return 0, nil },
	})
	m.WatchGenerations(func() float64 { return 0 }, func() float64 { return 0 })
	m.Request("GET", "/metrics", 200, 0)
	m.PKCS11Error("CKR_GENERAL_ERROR")
	m.AuthFailure("no_credentials")
	m.AuditFailure()
	m.ObserveKeyGeneration("RSA-2048", 0, nil)
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "csrd_") {
			names[f.GetName()] = true
		}
	}
	want := []string{
		"csrd_audit_rows", "csrd_audit_write_failures_total", "csrd_auth_failures_total",
		"csrd_generations_in_flight", "csrd_generations_waiting", "csrd_hsm_raw_sessions_in_use",
		"csrd_hsm_raw_sessions_max", "csrd_hsm_sessions_in_use", "csrd_hsm_sessions_max",
		"csrd_hsm_sessions_waiting", "csrd_http_request_duration_seconds", "csrd_http_requests_total",
		"csrd_key_generation_seconds", "csrd_key_records", "csrd_pkcs11_errors_total",
	}
	if got := slices.Sorted(maps.Keys(names)); !slices.Equal(got, want) {
		t.Errorf("metric names\n got %v\nwant %v", got, want)
	}
}
