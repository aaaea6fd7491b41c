package loadgen

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
	"time"
)

// TestClientGenerate drives the client against a real net/http server
// answering the way csrd can (a CSR with Content-Length, a body large
// enough to be chunked, an error, a closed connection): it must send csrd's
// request, reuse its keep-alive connection, and tell a CSR from anything
// else.
func TestClientGenerate(t *testing.T) {
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
		t.Run(tt.name, func(t *testing.T) {
			var conns atomic.Int32
			ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.URL.Path != "/KeyfactorAPI/CSRGeneration/Generate" ||
					r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("X-Keyfactor-Requested-With") != "APIClient" ||
					r.Header.Get("Content-Type") != "application/json" {
					http.Error(w, "bad request head: "+r.Method+" "+r.URL.Path, http.StatusTeapot)
					return
				}
				var body map[string]any
				if b, _ := io.ReadAll(r.Body); json.Unmarshal(b, &body) != nil || body["Subject"] != "CN=x" {
					http.Error(w, "bad body", http.StatusTeapot)
					return
				}
				if tt.close {
					w.Header().Set("Connection", "close")
				}
				if tt.status == http.StatusOK {
					w.Header().Set("Location", "/KeyfactorAPI/CSRGeneration/Pending/7")
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
			cl := NewClient(ts.URL+"/KeyfactorAPI", "Bearer tok", 1, time.Minute)
			defer cl.CloseIdle()
			for range 3 {
				a := cl.Generate(context.Background(), []byte(`{"Subject":"CN=x"}`))
				err := a.Failure()
				var se *StatusError
				switch {
				case tt.wantErr == 0 && err != nil:
					t.Fatalf("generate: %v", err)
				case tt.wantErr == 0 && a.ID != 7:
					t.Fatalf("generate: record id %d, want 7 from Location", a.ID)
				case tt.wantErr != 0 && (!errors.As(err, &se) || se.Status != tt.wantErr):
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

// TestAnswerFailure: only a well-formed success is no failure; a refusal
// keeps csrd's error code, and a transport error stays itself.
func TestAnswerFailure(t *testing.T) {
	transport := errors.New("connection refused")
	tests := []struct {
		name     string
		a        Answer
		wantCode string // "" and wantNil false: the transport error itself
		wantNil  bool
	}{
		{"200", Answer{Status: 200, ID: 1}, "", true},
		{"204", Answer{Status: 204}, "", true},
		{"malformed 200", Answer{Status: 200, Err: errors.New("200 without a CSR")}, "", false},
		{"503", Answer{Status: 503, ErrorCode: "0xA0050001", Message: "busy", RetryAfter: "1"}, "0xA0050001", false},
		{"transport", Answer{Err: transport}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.a.Failure()
			if tt.wantNil {
				if err != nil {
					t.Fatalf("Failure = %v, want nil", err)
				}
				return
			}
			var se *StatusError
			switch {
			case tt.a.Status == 0:
				if !errors.Is(err, transport) || errors.As(err, &se) {
					t.Errorf("Failure = %v, want the transport error", err)
				}
			case !errors.As(err, &se) || se.Status != tt.a.Status || se.ErrorCode != tt.wantCode:
				t.Errorf("Failure = %v, want a StatusError %d %s", err, tt.a.Status, tt.wantCode)
			}
		})
	}
}
