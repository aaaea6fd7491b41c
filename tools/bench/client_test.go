package bench

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestClients drives both clients against a real net/http server answering
// the way csrd can (a CSR with Content-Length, a body large enough to be
// chunked, an error, a closed connection): both must send csrd's request and
// agree on which answers are a CSR.
func TestClients(t *testing.T) {
	csr := `{"CSR":"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"}`
	big := strings.Replace(csr, "MIIB", strings.Repeat("A", 9000), 1) // past net/http's buffer: chunked
	tests := []struct {
		name    string
		status  int
		body    string
		close   bool
		wantErr int // HTTP status the error carries; 0: success
	}{
		{"csr", 200, csr, false, 0},
		{"chunked csr", 200, big, false, 0},
		{"connection close", 200, csr, true, 0},
		{"refusal", 400, `{"ErrorCode":"0xA0030002","Message":"no"}`, false, 400},
		{"200 without a csr", 200, `{"CSR":""}`, false, 200},
	}
	for _, tt := range tests {
		for _, std := range []bool{false, true} {
			name := tt.name + "/lean"
			if std {
				name = tt.name + "/net-http"
			}
			t.Run(name, func(t *testing.T) {
				var conns atomic.Int32
				ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method != http.MethodPost || r.URL.Path != "/KeyfactorAPI/CSRGeneration/Generate" ||
						r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("X-Keyfactor-Requested-With") != "APIClient" ||
						r.Header.Get("Content-Type") != "application/json" {
						http.Error(w, "bad request head: "+r.Method+" "+r.URL.Path, 418)
						return
					}
					var body map[string]any
					if b, _ := io.ReadAll(r.Body); json.Unmarshal(b, &body) != nil || body["Subject"] != "CN=x" {
						http.Error(w, "bad body", 418)
						return
					}
					if tt.close {
						w.Header().Set("Connection", "close")
					}
					w.WriteHeader(tt.status)
					_, _ = io.WriteString(w, tt.body)
				}))
				ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
					if s == http.StateNew {
						conns.Add(1)
					}
				}
				ts.Start()
				defer ts.Close()
				cl, err := Options{NetHTTP: std}.newClient(&server{url: ts.URL + "/KeyfactorAPI", bearer: "tok"}, 1)
				if err != nil {
					t.Fatal(err)
				}
				defer cl.close()
				for range 3 {
					err := cl.generate(context.Background(), []byte(`{"Subject":"CN=x"}`))
					var he *httpError
					switch {
					case tt.wantErr == 0 && err != nil:
						t.Fatalf("generate: %v", err)
					case tt.wantErr != 0 && (!errors.As(err, &he) || he.status != tt.wantErr):
						t.Fatalf("generate: %v, want an HTTP %d error", err, tt.wantErr)
					}
				}
				want := int32(1) // keep-alive: one connection for the three requests
				if tt.close {
					want = 3
				}
				if got := conns.Load(); got != want {
					t.Errorf("%d connections for 3 requests, want %d", got, want)
				}
			})
		}
	}
}
