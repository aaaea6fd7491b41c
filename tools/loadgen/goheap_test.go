package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
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
