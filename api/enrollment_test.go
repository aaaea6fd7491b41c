package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/auth"
	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/enroll"
	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
)

// grantsAuth authenticates every Bearer token as an identity with the
// grants the test sets.
type grantsAuth struct{ grants auth.Grants }

func (g grantsAuth) Basic(context.Context, string, string, string) (auth.Identity, error) {
	return auth.Identity{}, auth.ErrUnauthenticated
}

func (g grantsAuth) Bearer(context.Context, string, string) (auth.Identity, error) {
	return auth.Identity{Name: "svc", Method: auth.MethodBearer, Grants: g.grants}, nil
}

func (g grantsAuth) Certificate(context.Context, string, *x509.Certificate) (auth.Identity, error) {
	return auth.Identity{}, auth.ErrUnauthenticated
}

func (g grantsAuth) Malformed(string) error { return auth.ErrUnauthenticated }

// enrollServer is the API with Enrollment/CSR against the CAs given.
func enrollServer(t *testing.T, a api.Authenticator, wait time.Duration, cas ...config.CA) *httptest.Server {
	t.Helper()
	svc, err := enroll.New(enroll.Options{CAs: cas, Records: testStore, Keys: testSvc, Token: lifecycle.HSMToken{Token: testToken}, Log: testLog,
		Wait: wait, CertDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Options{BasePath: "/KeyfactorAPI", Log: testLog, Generator: testSvc,
		Pending: testSvc, Certificates: testSvc, Keys: testSvc, Enrollment: svc, KeyLife: svc, Auth: a, NoAuth: a == nil, Audit: testStore}))
	t.Cleanup(srv.Close)
	return srv
}

func pebbleConfig(t *testing.T, p *fixture.Pebble) config.CA {
	t.Helper()
	roots := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(roots, p.ChainRoots(t), 0o600); err != nil {
		t.Fatal(err)
	}
	return config.CA{Name: "pebble", ACME: config.ACME{Directory: p.Directory, RootsFile: p.RootsFile, ChainRootsFile: roots}}
}

// sdkPost sends a request the way Keyfactor's SDK does: lower-case header
// names, PascalCase JSON with sorted keys and every field present.
func sdkPost(t *testing.T, srv *httptest.Server, path, body string, hdr map[string]string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header["x-keyfactor-requested-with"] = []string{"APIClient"}
	req.Header["x-keyfactor-api-version"] = []string{"1"}
	req.Header["content-type"] = []string{"application/json; charset=utf-8"}
	for k, v := range hdr {
		req.Header[k] = []string{v}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b, res.Header
}

func enrollBody(csr, ca string, chain bool) string {
	c, _ := json.Marshal(csr)
	return fmt.Sprintf(`{"AdditionalEnrollmentFields":null,"CSR":%s,"CertificateAuthority":%q,"EnrollmentPatternId":null,`+
		`"IncludeChain":%t,"IncludeSubjectHeader":false,"Metadata":{"Owner":"web team","Cost":12},"OwnerRoleId":null,`+
		`"OwnerRoleName":null,"PrivateKey":null,"SANs":null,"Template":null,"Timestamp":"2026-01-01T00:00:00Z"}`, c, ca, chain)
}

type enrollAnswer struct {
	CertificateInformation struct {
		SerialNumber, IssuerDN, Thumbprint *string
		KeyfactorID                        int32
		KeyfactorRequestID                 int32 `json:"KeyfactorRequestId"`
		Certificates                       []string
		RequestDisposition                 string
		DispositionMessage                 string
	}
	Metadata map[string]string
}

// TestEnrollmentCSR: Keyfactor's Enrollment/CSR as its SDK calls it,
// against Pebble: ISSUED with the certificate married (Certificates in PEM
// or DER, with or without the chain, Metadata echoed), the route in
// Status/Endpoints, and Keyfactor-shaped errors.
func TestEnrollmentCSR(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Pebble")
	}
	p := fixture.StartPebble(t, fixture.PebbleOptions{AlwaysValid: true})
	srv := enrollServer(t, nil, time.Minute, pebbleConfig(t, p))
	gen := generateVia(t, srv, "api-enroll.example.test")

	status, b, hdr := sdkPost(t, srv, "/KeyfactorAPI/Enrollment/CSR", enrollBody(gen, "pebble", true), map[string]string{"x-certificateformat": "PEM"})
	var a enrollAnswer
	if status != 200 || !strings.Contains(hdr.Get("Content-Type"), "application/json") || json.Unmarshal(b, &a) != nil {
		t.Fatalf("Enrollment/CSR: %d %s", status, b)
	}
	ci := a.CertificateInformation
	if ci.RequestDisposition != "ISSUED" || ci.KeyfactorID < 1 || ci.KeyfactorRequestID < 1 || len(ci.Certificates) < 2 ||
		ci.Thumbprint == nil || ci.SerialNumber == nil || ci.IssuerDN == nil || a.Metadata["Owner"] != "web team" || a.Metadata["Cost"] != "12" {
		t.Fatalf("answer %s", b)
	}
	blk, _ := pem.Decode([]byte(ci.Certificates[0]))
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || leaf.DNSNames[0] != "api-enroll.example.test" {
		t.Fatalf("leaf: %v %v", err, leaf)
	}
	rec, _ := testStore.Get(context.Background(), int64(ci.KeyfactorID))
	if rec.State != "married" || rec.Cert.Thumbprint != *ci.Thumbprint {
		t.Fatalf("record %d is %s with %s", ci.KeyfactorID, rec.State, rec.Cert.Thumbprint)
	}

	// The same call, DER and without the chain: the same certificate.
	_, b, _ = sdkPost(t, srv, "/KeyfactorAPI/Enrollment/CSR", enrollBody(gen, "pebble", false), map[string]string{"x-certificateformat": "DER"})
	var der enrollAnswer
	_ = json.Unmarshal(b, &der)
	raw, _ := base64.StdEncoding.DecodeString(firstOf(der.CertificateInformation.Certificates))
	if len(der.CertificateInformation.Certificates) != 1 || string(raw) != string(leaf.Raw) || der.CertificateInformation.KeyfactorRequestID != ci.KeyfactorRequestID {
		t.Fatalf("DER again: %s", b)
	}

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/KeyfactorAPI/Status/Endpoints", nil)
	req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	eps, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(eps), `"POST /Enrollment/CSR"`) {
		t.Errorf("Status/Endpoints lacks the route: %s", eps)
	}

	other := generateVia(t, srv, "api-refused.example.test")
	for _, tc := range []struct {
		name, body string
		hdr        map[string]string
		status     int
		code, says string
	}{
		{"PFX asked for", enrollBody(other, "pebble", false), map[string]string{"x-certificateformat": "PFX"}, 400, api.CodeInvalidField, "PEM or DER"},
		{"a private key sent", `{"CSR":"x","PrivateKey":"secret"}`, nil, 400, api.CodeInvalidField, "never takes a private key"},
		{"unknown CA", enrollBody(other, "other-ca", false), nil, 400, api.CodeNotEnrollable, "not a CA this csrd enrolls with"},
		{"not a CSR csrd made", enrollBody(foreignCSR(t), "pebble", false), nil, 400, api.CodeNotEnrollable, "only keys it holds"},
		// Timestamp is not read: one without a zone (ASP.NET takes it) is no reason to refuse.
		{"a Timestamp without a zone", strings.Replace(enrollBody(foreignCSR(t), "pebble", false), "2026-01-01T00:00:00Z", "2026-01-01T00:00:00", 1),
			nil, 400, api.CodeNotEnrollable, "only keys it holds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, b, _ := sdkPost(t, srv, "/KeyfactorAPI/Enrollment/CSR", tc.body, tc.hdr)
			var e api.ErrorBody
			if status != tc.status || json.Unmarshal(b, &e) != nil || e.ErrorCode != tc.code || !strings.Contains(e.Message, tc.says) {
				t.Fatalf("%d %s; want %d %s saying %q", status, b, tc.status, tc.code, tc.says)
			}
		})
	}
}

// TestEnrollmentCAErrors: a CA that is down is a 503 with Retry-After and
// the cause; PENDING carries the request id and no certificate.
func TestEnrollmentCAErrors(t *testing.T) {
	down := config.CA{Name: "down", ACME: config.ACME{Directory: fmt.Sprintf("https://127.0.0.1:%d/dir", fixture.FreePort(t))}}
	srv := enrollServer(t, nil, time.Minute, down)
	csr := generateVia(t, srv, "down.example.test")
	status, b, hdr := sdkPost(t, srv, "/KeyfactorAPI/Enrollment/CSR", enrollBody(csr, "down", false), nil)
	var e api.ErrorBody
	if status != 503 || hdr.Get("Retry-After") == "" || json.Unmarshal(b, &e) != nil || e.ErrorCode != api.CodeCAUnavailable ||
		!strings.Contains(e.Message, `CA "down"`) || !strings.Contains(e.Message, "connection refused") {
		t.Fatalf("CA down: %d %s", status, b)
	}
}

// TestEnrollmentGrants: enrolling needs the enroll grant, and the key's
// enrollment pattern must be in the caller's scope.
func TestEnrollmentGrants(t *testing.T) {
	down := config.CA{Name: "down", ACME: config.ACME{Directory: fmt.Sprintf("https://127.0.0.1:%d/dir", fixture.FreePort(t))}}
	admin := enrollServer(t, nil, time.Minute, down)
	csr := generateVia(t, admin, "grants.example.test")
	for _, tc := range []struct {
		name   string
		grants auth.Grants
		status int
		says   string
	}{
		{"without enroll", auth.Grants{Operations: []auth.Operation{auth.OpGenerate}}, 403, "may not enroll certificates"},
		// A key outside the caller's scope is absent to it, as for a pending
		// read: the answer names no record.
		{"outside the scope", auth.Grants{Operations: []auth.Operation{auth.OpEnroll}, EnrollmentPatterns: []int{7}}, 400, "csrd enrolls only keys it holds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := enrollServer(t, grantsAuth{tc.grants}, time.Minute, down)
			status, b, _ := sdkPost(t, srv, "/KeyfactorAPI/Enrollment/CSR", enrollBody(csr, "down", false), map[string]string{"authorization": "Bearer x"})
			if status != tc.status || !strings.Contains(string(b), tc.says) || strings.Contains(string(b), "record") {
				t.Fatalf("%d %s; want %d saying %q and naming no record", status, b, tc.status, tc.says)
			}
		})
	}
}

// generateVia makes a pending key through srv's Generate and returns its CSR.
func generateVia(t *testing.T, srv *httptest.Server, name string) string {
	t.Helper()
	status, b, _ := sdkPost(t, srv, "/KeyfactorAPI/CSRGeneration/Generate",
		fmt.Sprintf(`{"Subject":"CN=%s","KeyType":"ECC","KeyLength":256,"SANs":{"dns":[%q]}}`, name, name), nil)
	var g struct{ CSR string }
	if status != 200 || json.Unmarshal(b, &g) != nil {
		t.Fatalf("Generate: %d %s", status, b)
	}
	return g.CSR
}

func firstOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// foreignCSR is a CSR for a key csrd does not hold.
func foreignCSR(t *testing.T) string {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"foreign.example.test"}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// TestRetireKeyRoute: POST /csrd/v1/keys/{id}/retire destroys a married
// key and answers the retired record; a pending key is a 409.
func TestRetireKeyRoute(t *testing.T) {
	srv := enrollServer(t, nil, time.Minute)
	csrPEM := generateVia(t, srv, "retire-route.example.test")
	blk, _ := pem.Decode([]byte(csrPEM))
	csr, _ := x509.ParseCertificateRequest(blk.Bytes)
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, csr.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := json.Marshal(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	status, b, _ := sdkPost(t, srv, "/KeyfactorAPI/Certificates/Import", `{"Certificate":`+string(leaf)+`}`, nil)
	var imp struct{ ID int64 }
	if status != 200 || json.Unmarshal(b, &imp) != nil {
		t.Fatalf("import: %d %s", status, b)
	}
	pending, _ := generateID(t, "retire-pending.example.test") // the same store as srv's
	status, b, _ = sdkPost(t, srv, fmt.Sprintf("/csrd/v1/keys/%d/retire", imp.ID), "", nil)
	var view struct {
		State       string
		Certificate *struct{ Serial string }
	}
	if status != 200 || json.Unmarshal(b, &view) != nil || view.State != "retired" || view.Certificate == nil || view.Certificate.Serial != "2A" {
		t.Fatalf("retire: %d %s", status, b)
	}
	rec, _ := testStore.Get(context.Background(), imp.ID)
	if objs, _ := testToken.ObjectsOf(context.Background(), hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}); len(objs) != 0 {
		t.Errorf("%v left in the token", objs)
	}
	status, b, _ = sdkPost(t, srv, fmt.Sprintf("/csrd/v1/keys/%d/retire", pending), "", nil)
	if status != 409 || !strings.Contains(string(b), "delete it instead") {
		t.Errorf("retire a pending key: %d %s", status, b)
	}
}
