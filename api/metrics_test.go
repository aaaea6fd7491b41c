package api_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/metrics"
	"github.com/csrd/csrd/policy"
)

// scrape returns every sample of /metrics as "name{labels}" → value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func TestMetricsExposedAndMoving(t *testing.T) {
	m := metrics.New(metrics.Sources{
		Sessions: testToken.SessionStats, Records: testStore.CountByState, AuditRows: testStore.CountAudit,
		DB: testStore.Stats,
	})
	svc := lifecycle.New(lifecycle.Timed(lifecycle.HSMToken{Token: testToken}, m), testStore, policy.Default(), testLog)
	srv := httptest.NewServer(api.New(api.Options{BasePath: "/KeyfactorAPI", Log: testLog, Generator: svc,
		NoAuth: true, Audit: testStore, Metrics: m, MaxGenerations: 2, GenerationWait: time.Second}))
	defer srv.Close()

	before := scrape(t, srv.URL)
	for _, name := range []string{
		`csrd_hsm_sessions_max`, `csrd_hsm_sessions_in_use`, `csrd_hsm_sessions_waiting`,
		`csrd_key_records{state="pending"}`, `csrd_audit_rows`, `go_goroutines`,
		`csrd_generations_in_flight`, `csrd_generations_waiting`, `csrd_hsm_raw_sessions_in_use`, `csrd_hsm_raw_sessions_max`,
		`csrd_db_writes_total`, `csrd_db_commits_total`, `csrd_db_write_wait_seconds_total`,
	} {
		if _, ok := before[name]; !ok {
			t.Errorf("%s not exposed", name)
		}
	}
	if before["csrd_hsm_sessions_max"] != 7 || before["csrd_hsm_sessions_in_use"] != 0 {
		t.Errorf("sessions: max %v in use %v, want 7 (8 minus crypto11's own) and 0",
			before["csrd_hsm_sessions_max"], before["csrd_hsm_sessions_in_use"])
	}
	post := func(body string) int {
		req, _ := http.NewRequest("POST", srv.URL+generatePath, strings.NewReader(body))
		req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	if got := post(`{"Subject":"CN=metrics.example.com","KeyType":"ECC","KeyLength":256}`); got != 200 {
		t.Fatalf("generate: %d", got)
	}
	if got := post(`{"Subject":"CN=hybrid.example.com","KeyType":"ECC","KeyLength":256,"AlternativeKeyType":"ML-DSA-44"}`); got != 200 {
		t.Fatalf("hybrid generate: %d", got)
	}
	if got := post(`{"KeyType":"ECC"}`); got != 400 {
		t.Fatalf("bad generate: %d", got)
	}
	after := scrape(t, srv.URL)
	moved := []struct {
		name string
		by   float64
	}{
		{`csrd_http_requests_total{method="POST",route="/KeyfactorAPI/CSRGeneration/Generate",status="200"}`, 2},
		{`csrd_http_requests_total{method="POST",route="/KeyfactorAPI/CSRGeneration/Generate",status="400"}`, 1},
		{`csrd_http_requests_total{method="GET",route="/metrics",status="200"}`, 1},
		{`csrd_http_request_duration_seconds_count{method="POST",route="/KeyfactorAPI/CSRGeneration/Generate"}`, 3},
		{`csrd_key_generation_seconds_count{key_type="ECDSA-P-256",result="ok"}`, 2},
		{`csrd_key_generation_seconds_count{key_type="ML-DSA-44-sealed",result="ok"}`, 1}, // SoftHSM has no ML-DSA
		{`csrd_key_records{state="pending"}`, 2},
		{`csrd_audit_rows`, 3}, // the generates and the refused one
	}
	for _, mv := range moved {
		if d := after[mv.name] - before[mv.name]; d != mv.by {
			t.Errorf("%s moved by %v, want %v", mv.name, d, mv.by)
		}
	}
	if after[`csrd_key_generation_seconds_sum{key_type="ECDSA-P-256",result="ok"}`] <= 0 {
		t.Error("key generation latency not recorded")
	}
}

// failingGenerator answers every Generate with a PKCS#11 failure, as the hsm
// package reports one; it stands in for the use case, not for PKCS#11.
type failingGenerator struct{ err error }

func (f failingGenerator) Generate(context.Context, lifecycle.GenerateRequest) (*lifecycle.GenerateResult, error) {
	return nil, f.err
}

func TestMetricsCountPKCS11Errors(t *testing.T) {
	m := metrics.New(metrics.Sources{})
	hsmErr := &hsm.Error{Op: "generate key pair", CKR: 0x32, Err: hsm.ErrUnavailable} // CKR_DEVICE_REMOVED
	if !errors.Is(hsmErr, hsm.ErrUnavailable) {
		t.Fatal("hsm.Error does not unwrap")
	}
	srv := httptest.NewServer(api.New(api.Options{BasePath: "/KeyfactorAPI", Log: testLog,
		Generator: failingGenerator{hsmErr}, NoAuth: true, Metrics: m}))
	defer srv.Close()
	for range 2 {
		req, _ := http.NewRequest("POST", srv.URL+generatePath, strings.NewReader(`{"Subject":"CN=x","KeyType":"ECC","KeyLength":256}`))
		req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 {
			t.Fatalf("status %d, want 503", resp.StatusCode)
		}
	}
	if got := scrape(t, srv.URL)[`csrd_pkcs11_errors_total{code="CKR_DEVICE_REMOVED"}`]; got != 2 {
		t.Errorf("csrd_pkcs11_errors_total{code=CKR_DEVICE_REMOVED} = %v, want 2", got)
	}
}
