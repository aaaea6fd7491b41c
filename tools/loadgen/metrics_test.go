package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// GoHeap reads the one metric it needs from a Prometheus text page and
// reports every other answer as an error, never as a number.
func TestGoHeap(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   int64
		ok     bool
	}{
		{"metric present", 200, "# HELP x\ngo_memstats_heap_inuse_bytes_total 1\ngo_memstats_heap_inuse_bytes 5.718016e+06\ngo_threads 9\n", 5718016, true},
		{"metric absent", 200, "go_threads 9\n", 0, false},
		{"not a number", 200, "go_memstats_heap_inuse_bytes NaNish\n", 0, false},
		{"no metrics grant", 403, `{"ErrorCode":"0xA0040003"}`, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var auth, path string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				auth, path = r.Header.Get("Authorization"), r.URL.Path
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			c := &Client{HTTP: srv.Client(), Base: srv.URL + "/KeyfactorAPI", Authorization: "Bearer x"}
			got, err := c.GoHeap(context.Background())
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("GoHeap = %d, %v; want %d (ok %v)", got, err, tt.want, tt.ok)
			}
			if path != "/metrics" || auth != "Bearer x" {
				t.Errorf("asked %q with Authorization %q", path, auth)
			}
		})
	}
}

// TestMetricValues: unlabelled samples come back in the order asked; a
// missing, doubled, labelled-only or malformed one is an error naming it.
func TestMetricValues(t *testing.T) {
	page := "# HELP go_threads Number of OS threads created.\n# TYPE go_threads gauge\ngo_threads 73\n" +
		"go_memstats_sys_bytes 2.2216712e+07\ngo_gc_duration_seconds{quantile=\"0\"} 1e-05\n"
	for _, tc := range []struct {
		name    string
		page    string
		want    []float64
		wantErr string
	}{
		{"both present, in the asked order", page, []float64{2.2216712e+07, 73}, ""},
		{"one missing", "go_threads 73\n", nil, "no go_memstats_sys_bytes"},
		{"twice", page + "go_threads 74\n", nil, "go_threads twice"},
		{"not a number", "go_threads many\ngo_memstats_sys_bytes 1\n", nil, "go_threads"},
		{"a labelled sample is not the unlabelled one", "go_threads{x=\"1\"} 5\ngo_memstats_sys_bytes 1\n", nil, "no go_threads"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := metricValues([]byte(tc.page), "go_memstats_sys_bytes", "go_threads")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
