package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// heapMetric is the Go runtime's heap in use, as csrd's /metrics exports it.
const heapMetric = "go_memstats_heap_inuse_bytes"

// GoHeap reads csrd's Go heap in use from its /metrics. Next to the process
// RSS it tells csrd's own memory from what the PKCS#11 module holds in C. A
// csrd that does not let this client read metrics answers an error, and
// the report leaves the figure out.
func (c *Client) GoHeap(ctx context.Context) (int64, error) {
	v, err := c.Metrics(ctx, heapMetric)
	if err != nil {
		return 0, err
	}
	return int64(v[0]), nil
}

// Metrics reads csrd's /metrics (at the root of the base URL's host) and
// returns the unlabelled samples of the metrics names, in that order; each
// must be there exactly once.
func (c *Client) Metrics(ctx context.Context, names ...string) ([]float64, error) {
	u, err := url.Parse(c.Base)
	if err != nil {
		return nil, fmt.Errorf("loadgen: metrics: %w", err)
	}
	u.Path, u.RawPath, u.RawQuery = "/metrics", "", ""
	a, page, _ := c.do(ctx, http.MethodGet, u.String(), nil)
	switch {
	case a.Err != nil:
		return nil, fmt.Errorf("loadgen: metrics: %w", a.Err)
	case a.Status != http.StatusOK:
		return nil, fmt.Errorf("loadgen: metrics: status %d", a.Status)
	}
	return metricValues(page, names...)
}

// metricValues picks the unlabelled samples of names out of a page in
// Prometheus's text format, read by Prometheus's own parser.
func metricValues(page []byte, names ...string) ([]float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(page))
	if err != nil {
		var pe expfmt.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("loadgen: /metrics line %d %q: %s", pe.Line, line(page, pe.Line), pe.Msg)
		}
		return nil, fmt.Errorf("loadgen: /metrics: %w", err)
	}
	vals := make([]float64, len(names))
	for i, name := range names {
		var found []*dto.Metric
		for _, m := range families[name].GetMetric() {
			if len(m.GetLabel()) == 0 {
				found = append(found, m)
			}
		}
		switch len(found) {
		case 0:
			return nil, fmt.Errorf("loadgen: /metrics has no %s", name)
		case 1:
			vals[i] = value(found[0])
		default:
			return nil, fmt.Errorf("loadgen: /metrics: %s twice", name)
		}
	}
	return vals, nil
}

// value is a sample's value, whatever its type (the gauges and counters
// read here; an untyped sample has no TYPE line).
func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	}
	return m.GetUntyped().GetValue()
}

// line is line n (from 1) of page, for an error message.
func line(page []byte, n int) []byte {
	lines := bytes.Split(page, []byte("\n"))
	if n < 1 || n > len(lines) {
		return nil
	}
	return lines[n-1]
}
