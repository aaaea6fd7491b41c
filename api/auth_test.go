package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/auth"
	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/metrics"
	"github.com/csrd/csrd/store"
	"github.com/csrd/csrd/tlsconfig"
)

// Cheap argon2 costs for tests; the verifier reads the costs from the hash.
var testArgon = auth.Argon2Params{Memory: 64, Time: 1, Threads: 1}

const (
	alicePass  = "correct horse battery staple"
	bobPass    = "hunter2-but-longer"
	enrollPass = "enroll-pass-0123456789"
)

// authFixture is a server with authentication on, its auth file and the
// throttle's clock.
type authFixture struct {
	srv      *httptest.Server
	token    string // full-scope API token
	expired  string // an expired token
	clientCA *x509.CertPool
	ca       *fixture.CA // issues the client certificates
	clock    *fakeClock
	pinned   tls.Certificate // client cert whose fingerprint is pinned
	roots    *x509.CertPool  // trust for csrd's own TLS config (nil: httptest's)
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func hash(t *testing.T, pw string) string {
	t.Helper()
	h, err := auth.HashPassword(pw, testArgon)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// fixtureTLS selects the server's TLS configuration.
type fixtureTLS int

const (
	// tlsOptionalClientCert: httptest's TLS, client certificates verified
	// when sent, so one server shows every credential kind.
	tlsOptionalClientCert fixtureTLS = iota
	// tlsCSRD: csrd's own tlsconfig (what cmd/csrd serves), no mTLS.
	tlsCSRD
	// tlsCSRDMutual: csrd's tlsconfig with client_ca_file (mTLS required).
	tlsCSRDMutual
)

// newAuthFixture writes an auth file, opens it and serves the real API over
// TLS with optional client certificates chaining to a throw-away CA.
func newAuthFixture(t *testing.T, failureLimit int) *authFixture {
	t.Helper()
	return newAuthFixtureTLS(t, failureLimit, tlsOptionalClientCert)
}

func newAuthFixtureTLS(t *testing.T, failureLimit int, mode fixtureTLS) *authFixture {
	t.Helper()
	return newAuthFixtureWith(t, fixtureOptions{failureLimit: failureLimit, tls: mode})
}

// fixtureOptions vary the auth fixture.
type fixtureOptions struct {
	failureLimit int
	tls          fixtureTLS
	// verify is passed to auth.Open (Throttle is set from failureLimit).
	verify auth.Options
	// proxied: 127.0.0.1 is a trusted proxy, so X-Forwarded-For names
	// the source (tests of several sources).
	proxied bool
	// users are added to the fixture's users.
	users []auth.User
}

func newAuthFixtureWith(t *testing.T, o fixtureOptions) *authFixture {
	t.Helper()
	fx := &authFixture{clock: &fakeClock{t: time.Now()}}
	fx.ca = fixture.NewCA(t, "csrd test client CA")
	fx.clientCA = x509.NewCertPool()
	fx.clientCA.AddCert(fx.ca.Cert)
	fx.pinned = fx.clientCert(t, "pinned-client")
	fp := sha256.Sum256(fx.pinned.Certificate[0])

	tok, id, sha, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	fx.token = tok
	etok, eid, esha, _ := auth.NewToken()
	fx.expired = etok
	af := &auth.File{
		Users: []auth.User{
			{Name: "alice", PasswordHash: hash(t, alicePass),
				Grants: auth.Grants{Operations: []auth.Operation{auth.OpGenerate, auth.OpPendingRead}, EnrollmentPatterns: []int{1, 2}}},
			// bcrypt, as another tool might have written it.
			{Name: `CORP\bob`, PasswordHash: bcryptHash(t, bobPass),
				Grants: auth.Grants{Operations: []auth.Operation{auth.OpPendingRead}}},
			{Name: "svc-enroll", PasswordHash: hash(t, enrollPass),
				Grants: auth.Grants{Operations: []auth.Operation{auth.OpGenerate, auth.OpPendingRead, auth.OpPendingDelete}}},
		},
		Tokens: []auth.Token{
			{Name: "ci", ID: id, SHA256: sha, Grants: auth.Grants{Operations: []auth.Operation{auth.OpGenerate, auth.OpMetrics}}},
			{Name: "old", ID: eid, SHA256: esha, Expires: time.Now().Add(-time.Hour), Grants: auth.Grants{Operations: []auth.Operation{auth.OpAdmin}}},
		},
		Clients: []auth.Client{
			{Name: "ra01", SubjectCN: "ra01.example.com", Grants: auth.Grants{Operations: []auth.Operation{auth.OpGenerate}, Templates: []string{"WebServer"}}},
			{Name: "pinned", SHA256: hex.EncodeToString(fp[:]), Grants: auth.Grants{Operations: []auth.Operation{auth.OpAdmin}}},
		},
	}
	af.Users = append(af.Users, o.users...)
	path := filepath.Join(t.TempDir(), "auth.yaml")
	if err := af.Save(path); err != nil {
		t.Fatal(err)
	}
	th := auth.NewThrottle(o.failureLimit, time.Minute)
	th.SetClock(fx.clock.now)
	o.verify.Throttle = th
	a, err := auth.Open(path, testLog, o.verify)
	if err != nil {
		t.Fatal(err)
	}
	var proxies []*net.IPNet
	if o.proxied {
		_, lo, _ := net.ParseCIDR("127.0.0.1/32")
		proxies = append(proxies, lo)
	}
	srv := httptest.NewUnstartedServer(api.New(api.Options{
		BasePath: "/KeyfactorAPI", Log: testLog, Generator: testSvc,
		Pending: testSvc, Certificates: testSvc, Keys: testSvc,
		Auth: a, Audit: testStore, Metrics: metrics.New(metrics.Sources{}),
		TrustedProxies: proxies,
	}))
	switch o.tls {
	case tlsOptionalClientCert:
		srv.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: fx.clientCA, MinVersion: tls.VersionTLS12}
	default:
		srv.TLS = fx.csrdTLS(t, o.tls == tlsCSRDMutual)
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	fx.srv = srv
	return fx
}

// csrdTLS writes a server certificate for 127.0.0.1 (and the client CA)
// to files and loads them with csrd's tlsconfig, as cmd/csrd does.
func (fx *authFixture) csrdTLS(t *testing.T, mutual bool) *tls.Config {
	t.Helper()
	dir := t.TempDir()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serverCA := fixture.NewCA(t, "csrd test server CA")
	der := serverCA.ServerCert(t, k.Public()).Raw
	fx.roots = x509.NewCertPool()
	fx.roots.AddCert(serverCA.Cert)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(k)
	o := tlsconfig.Options{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	write := func(path, typ string, b []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(o.CertFile, "CERTIFICATE", der)
	write(o.KeyFile, "PRIVATE KEY", keyDER)
	if mutual {
		o.ClientCAFile = filepath.Join(dir, "clients.pem")
		write(o.ClientCAFile, "CERTIFICATE", fx.ca.Cert.Raw)
	}
	ts, err := tlsconfig.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return ts.Config()
}

func bcryptHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func (fx *authFixture) clientCert(t *testing.T, cn string) tls.Certificate {
	return fx.ca.TLSClient(t, cn)
}

// client returns an HTTPS client trusting the server, with an optional
// client certificate.
func (fx *authFixture) client(cert *tls.Certificate) *http.Client {
	var tr *http.Transport
	if fx.roots != nil {
		tr = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: fx.roots}}
	} else {
		tr = fx.srv.Client().Transport.(*http.Transport).Clone()
	}
	if cert != nil {
		tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: tr}
}

type call struct {
	method, path, body string
	authz              string // Authorization header value
	hdr                map[string]string
}

// alter changes the token's last character (always to a different one).
func alter(tok string) string {
	last := "A"
	if strings.HasSuffix(tok, "A") {
		last = "B"
	}
	return tok[:len(tok)-1] + last
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func (fx *authFixture) do(t *testing.T, cl *http.Client, c call) (*http.Response, api.ErrorBody) {
	t.Helper()
	if cl == nil {
		cl = fx.client(nil)
	}
	req, err := http.NewRequest(c.method, fx.srv.URL+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.authz != "" {
		req.Header.Set("Authorization", c.authz)
	}
	for k, v := range c.hdr {
		req.Header.Set(k, v)
	}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var eb api.ErrorBody
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(b, &eb); err != nil || eb.ErrorCode == "" {
			t.Errorf("%s %s: %d body %q is not Keyfactor's error format", c.method, c.path, resp.StatusCode, b)
		}
	}
	return resp, eb
}

func genBody(extra string) string {
	return `{"Subject":"CN=auth.example.com","KeyType":"ECC","KeyLength":256` + extra + `}`
}

func TestAuthMatrix(t *testing.T) {
	fx := newAuthFixture(t, 0)
	goodCert := fx.clientCert(t, "ra01.example.com")
	unlisted := fx.clientCert(t, "stranger.example.com")
	tests := []struct {
		name     string
		cert     *tls.Certificate
		c        call
		want     int
		wantCode string
	}{
		{"no credentials", nil, call{method: "POST", path: generatePath, body: genBody("")}, 401, api.CodeUnauthenticated},
		{"wrong password", nil, call{method: "POST", path: generatePath, body: genBody(`,"EnrollmentPatternId":1`), authz: basic("alice", "wrong")}, 401, api.CodeUnauthenticated},
		{"unknown user", nil, call{method: "POST", path: generatePath, body: genBody(""), authz: basic("mallory", alicePass)}, 401, api.CodeUnauthenticated},
		{"malformed basic", nil, call{method: "POST", path: generatePath, body: genBody(""), authz: "Basic !!!"}, 401, api.CodeUnauthenticated},
		{"unknown scheme", nil, call{method: "POST", path: generatePath, body: genBody(""), authz: "Negotiate abc"}, 401, api.CodeUnauthenticated},
		{"user, allowed pattern", nil, call{method: "POST", path: generatePath, body: genBody(`,"EnrollmentPatternId":2`), authz: basic("alice", alicePass)}, 200, ""},
		{"DOMAIN\\user as Keyfactor sends it", nil, call{method: "POST", path: generatePath, body: genBody(`,"EnrollmentPatternId":1`), authz: basic(`KEYEXAMPLE\alice`, alicePass)}, 200, ""},
		{"right user, wrong pattern", nil, call{method: "POST", path: generatePath, body: genBody(`,"EnrollmentPatternId":7`), authz: basic("alice", alicePass)}, 403, api.CodeForbidden},
		{"right user, no pattern named", nil, call{method: "POST", path: generatePath, body: genBody(""), authz: basic("alice", alicePass)}, 403, api.CodeForbidden},
		{"bcrypt user without generate", nil, call{method: "POST", path: generatePath, body: genBody(""), authz: basic(`corp\BOB`, bobPass)}, 403, api.CodeForbidden},
		{"bcrypt user wrong domain", nil, call{method: "GET", path: "/KeyfactorAPI/Status/Endpoints", authz: basic(`OTHER\bob`, bobPass)}, 401, api.CodeUnauthenticated},
		{"bcrypt user status", nil, call{method: "GET", path: "/KeyfactorAPI/Status/Endpoints", authz: basic(`CORP\bob`, bobPass)}, 200, ""},
		{"token", nil, call{method: "POST", path: generatePath, body: genBody(""), authz: "Bearer " + fx.token}, 200, ""},
		{"token, lower-case scheme", nil, call{method: "POST", path: generatePath, body: genBody(""), authz: "bearer " + fx.token}, 200, ""},
		{"token altered", nil, call{method: "POST", path: generatePath, body: genBody(""), authz: "Bearer " + alter(fx.token)}, 401, api.CodeUnauthenticated},
		{"token expired", nil, call{method: "POST", path: generatePath, body: genBody(""), authz: "Bearer " + fx.expired}, 401, api.CodeUnauthenticated},
		{"token as password", nil, call{method: "POST", path: generatePath, body: genBody(""), authz: basic("ci", fx.token)}, 401, api.CodeUnauthenticated},
		{"mTLS listed CN, allowed template", &goodCert, call{method: "POST", path: generatePath, body: genBody(`,"Template":"webserver"`)}, 200, ""},
		{"mTLS listed CN, other template", &goodCert, call{method: "POST", path: generatePath, body: genBody(`,"Template":"CodeSigning"`)}, 403, api.CodeForbidden},
		{"mTLS pinned fingerprint", &fx.pinned, call{method: "POST", path: generatePath, body: genBody(`,"EnrollmentPatternId":99`)}, 200, ""},
		{"mTLS valid but unlisted", &unlisted, call{method: "POST", path: generatePath, body: genBody("")}, 401, api.CodeUnauthenticated},
		{"explicit credentials win over the certificate", &fx.pinned, call{method: "POST", path: generatePath, body: genBody(""), authz: basic(`CORP\bob`, bobPass)}, 403, api.CodeForbidden},
		{"pending read granted", nil, call{method: "GET", path: "/KeyfactorAPI/CSRGeneration/Pending", authz: basic(`CORP\bob`, bobPass)}, 200, ""},
		{"pending delete not granted", nil, call{method: "DELETE", path: "/KeyfactorAPI/CSRGeneration/Pending/1", authz: basic(`CORP\bob`, bobPass)}, 403, api.CodeForbidden},
		{"import not granted", nil, call{method: "POST", path: "/KeyfactorAPI/Certificates/Import", body: `{"Certificate":"x"}`, authz: "Bearer " + fx.token}, 403, api.CodeForbidden},
		{"key records need admin", nil, call{method: "GET", path: "/csrd/v1/keys", authz: basic("alice", alicePass)}, 403, api.CodeForbidden},
		{"key records as admin (mTLS)", &fx.pinned, call{method: "GET", path: "/csrd/v1/keys?limit=1"}, 200, ""},
		{"key records without credentials", nil, call{method: "GET", path: "/csrd/v1/keys"}, 401, api.CodeUnauthenticated},
		{"metrics without grant", nil, call{method: "GET", path: "/metrics", authz: basic("alice", alicePass)}, 403, api.CodeForbidden},
		{"metrics with token", nil, call{method: "GET", path: "/metrics", authz: "Bearer " + fx.token}, 200, ""},
		{"openapi needs no credentials", nil, call{method: "GET", path: "/KeyfactorAPI/openapi.json"}, 200, ""},
		{"unknown path is 404 before auth", nil, call{method: "GET", path: "/KeyfactorAPI/Nope"}, 404, api.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, eb := fx.do(t, fx.client(tt.cert), tt.c)
			if resp.StatusCode != tt.want || eb.ErrorCode != tt.wantCode {
				t.Fatalf("got %d %+v, want %d %s", resp.StatusCode, eb, tt.want, tt.wantCode)
			}
			if tt.want == 401 {
				got := resp.Header.Values("WWW-Authenticate")
				if len(got) != 2 || !strings.HasPrefix(got[0], "Basic realm=") || !strings.HasPrefix(got[1], "Bearer realm=") {
					t.Errorf("WWW-Authenticate = %q, want Basic and Bearer challenges", got)
				}
			}
		})
	}
}

// Through csrd's own TLS configuration with client_ca_file (mTLS required):
// the verified certificate is the identity; without one there is no
// handshake; a Basic header still wins over the certificate.
func TestAuthMTLSWithCSRDTLSConfig(t *testing.T) {
	fx := newAuthFixtureTLS(t, 0, tlsCSRDMutual)
	ra01 := fx.clientCert(t, "ra01.example.com")
	if resp, eb := fx.do(t, fx.client(&ra01), call{method: "POST", path: generatePath, body: genBody(`,"Template":"WebServer"`)}); resp.StatusCode != 200 {
		t.Fatalf("mTLS generate: %d %+v", resp.StatusCode, eb)
	}
	if resp, eb := fx.do(t, fx.client(&ra01), call{method: "GET", path: "/KeyfactorAPI/Status/Endpoints", authz: basic(`CORP\bob`, bobPass)}); resp.StatusCode != 200 {
		t.Fatalf("Basic over mTLS: %d %+v", resp.StatusCode, eb)
	}
	req, _ := http.NewRequest("GET", fx.srv.URL+"/KeyfactorAPI/Status/Endpoints", nil)
	req.Header.Set("Authorization", basic(`CORP\bob`, bobPass))
	if resp, err := fx.client(nil).Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("no client certificate: %d, want no handshake", resp.StatusCode)
	}
}

// A client certificate from another CA never identifies anyone: the TLS
// layer refuses it.
func TestAuthForeignClientCA(t *testing.T) {
	fx := newAuthFixture(t, 0)
	foreign := fixture.NewCA(t, "someone else's CA").TLSClient(t, "ra01.example.com")
	req, _ := http.NewRequest("GET", fx.srv.URL+"/KeyfactorAPI/Status/Endpoints", nil)
	req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
	cl := fx.client(nil)
	// Go's client only offers a certificate the server's CA list accepts;
	// force it, as a hostile client would.
	cl.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &foreign, nil
	}
	if resp, err := cl.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("request with a foreign client certificate got %d, want a TLS failure", resp.StatusCode)
	}
}

// Status/Endpoints lists only what the caller may use.
func TestStatusEndpointsFiltered(t *testing.T) {
	fx := newAuthFixture(t, 0)
	for _, tt := range []struct {
		authz    string
		generate bool
	}{{basic(`CORP\bob`, bobPass), false}, {"Bearer " + fx.token, true}} {
		req, _ := http.NewRequest("GET", fx.srv.URL+"/KeyfactorAPI/Status/Endpoints", nil)
		req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
		req.Header.Set("Authorization", tt.authz)
		resp, err := fx.client(nil).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eps []string
		err = json.NewDecoder(resp.Body).Decode(&eps)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: endpoints body: %v", tt.authz[:6], err)
		}
		has := strings.Contains(strings.Join(eps, "|"), "POST /CSRGeneration/Generate")
		if has != tt.generate || !strings.Contains(strings.Join(eps, "|"), "GET /Status/Endpoints") {
			t.Errorf("%s: endpoints %q, generate listed %v want %v", tt.authz[:6], eps, has, tt.generate)
		}
	}
}

func TestAuthThrottling(t *testing.T) {
	fx := newAuthFixture(t, 3)
	status := func(authz string, hdr map[string]string) (int, string) {
		resp, eb := fx.do(t, nil, call{method: "GET", path: "/KeyfactorAPI/Status/Endpoints", authz: authz, hdr: hdr})
		return resp.StatusCode, eb.ErrorCode + " " + resp.Header.Get("Retry-After")
	}
	good, bad := basic(`CORP\bob`, bobPass), basic(`CORP\bob`, "guess")
	// Missing credentials are not guesses and do not count.
	for range 5 {
		if got, _ := status("", nil); got != 401 {
			t.Fatalf("no credentials: %d", got)
		}
	}
	for i := range 3 {
		if got, _ := status(bad, nil); got != 401 {
			t.Fatalf("failure %d: %d, want 401", i+1, got)
		}
	}
	// Locked out: even the right password is not looked at, and a forged
	// X-Forwarded-For does not make a new source.
	for _, hdr := range []map[string]string{nil, {"X-Forwarded-For": "203.0.113.9"}, {"X-Real-Ip": "203.0.113.10"}} {
		got, detail := status(good, hdr)
		if got != 429 || !strings.HasPrefix(detail, api.CodeThrottled+" ") || strings.HasSuffix(detail, " ") {
			t.Fatalf("locked out (%v): %d %q, want 429 with Retry-After", hdr, got, detail)
		}
	}
	fx.clock.add(61 * time.Second)
	// One more failure after the lockout doubles it.
	if got, _ := status(bad, nil); got != 401 {
		t.Fatalf("after lockout, bad: %d", got)
	}
	if got, detail := status(good, nil); got != 429 || !strings.HasSuffix(detail, " 120") {
		t.Fatalf("second lockout: %d %q, want 429 Retry-After 120", got, detail)
	}
	fx.clock.add(121 * time.Second)
	if got, _ := status(good, nil); got != 200 {
		t.Fatalf("after lockout, good: %d", got)
	}
	// Success reset the count: two failures do not lock out again.
	for range 2 {
		status(bad, nil)
	}
	if got, _ := status(good, nil); got != 200 {
		t.Fatalf("count was not reset by success: %d", got)
	}
}

// Every API call that did something, and every failed login, leaves an
// audit row that names who, from where, what and the outcome — never the
// password — and the chain verifies.
func TestAuthAudited(t *testing.T) {
	fx := newAuthFixture(t, 0)
	ctx := context.Background()
	before, err := testStore.VerifyAudit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := fx.do(t, nil, call{method: "POST", path: generatePath, body: genBody(`,"EnrollmentPatternId":1`),
		authz: basic(`KEYEXAMPLE\alice`, alicePass), hdr: map[string]string{"X-Request-Id": "audit-test-1"}})
	if resp.StatusCode != 200 {
		t.Fatalf("generate: %d", resp.StatusCode)
	}
	fx.do(t, nil, call{method: "POST", path: generatePath, body: genBody(""), authz: basic(`EVIL\mallory`, "s3cr3t-guess")})
	fx.do(t, nil, call{method: "POST", path: generatePath, body: genBody(`,"EnrollmentPatternId":9`), authz: basic("alice", alicePass)})
	fx.do(t, nil, call{method: "POST", path: generatePath, body: genBody("")}) // no credentials: not audited
	fx.do(t, nil, call{method: "POST", path: generatePath, body: genBody(""), authz: "Bearer " + fx.expired})

	rows, err := testStore.ListAudit(ctx, before.LastID, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 {
		t.Fatalf("%d audit rows, want 4: %+v", len(rows), rows)
	}
	want := []struct{ actor, method, result, detail string }{
		{"alice", "basic", store.AuditOK, ""},
		{`EVIL\mallory`, "basic", store.AuditUnauthenticated, api.CodeUnauthenticated},
		{"alice", "basic", store.AuditForbidden, api.CodeForbidden},
		// A failed token is named by its public id, never by the token.
		{"token " + auth.TokenID(fx.expired), "bearer", store.AuditUnauthenticated, api.CodeUnauthenticated},
	}
	for i, w := range want {
		r := rows[i]
		if r.Actor != w.actor || r.AuthMethod != w.method || r.Result != w.result || r.Detail != w.detail ||
			r.Operation != "generate" || r.Source != "127.0.0.1" {
			t.Errorf("row %d = %+v, want %+v", i, r, w)
		}
		b, _ := json.Marshal(r)
		for _, secret := range []string{alicePass, "s3cr3t-guess", fx.expired} {
			if strings.Contains(string(b), secret) {
				t.Errorf("row %d contains a password", i)
			}
		}
	}
	if r := rows[0]; r.RecordID == 0 || r.KeyLabel != "csrd-"+itoa(r.RecordID) || r.RequestID != "audit-test-1" || r.Status != 200 {
		t.Errorf("generate row lacks record, label or request id: %+v", r)
	}
	if _, err := testStore.VerifyAudit(ctx); err != nil {
		t.Errorf("VerifyAudit: %v", err)
	}
}

func itoa(n int64) string { return big.NewInt(n).String() }

// Authentication must not be off by accident: a server given neither an
// Authenticator nor NoAuth refuses everything.
func TestAuthFailsClosed(t *testing.T) {
	srv := httptest.NewServer(api.New(api.Options{BasePath: "/KeyfactorAPI", Log: testLog, Generator: testSvc}))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/KeyfactorAPI/Status/Endpoints", nil)
	req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
	req.Header.Set("Authorization", basic("alice", alicePass))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("status %d, want 401", resp.StatusCode)
	}
}

// Behind a trusted reverse proxy the audit log names the client the proxy
// saw, not the proxy.
func TestAuditSourceBehindTrustedProxy(t *testing.T) {
	_, lo, _ := net.ParseCIDR("127.0.0.1/32")
	srv := httptest.NewServer(api.New(api.Options{BasePath: "/KeyfactorAPI", Log: testLog, Generator: testSvc,
		NoAuth: true, Audit: testStore, TrustedProxies: []*net.IPNet{lo}}))
	defer srv.Close()
	ctx := context.Background()
	before, err := testStore.VerifyAudit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", srv.URL+generatePath, strings.NewReader(genBody("")))
	req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", "198.51.100.1, 203.0.113.5") // the first part is the client's own claim
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	rows, err := testStore.ListAudit(ctx, before.LastID, 10)
	if err != nil || len(rows) != 1 || rows[0].Source != "203.0.113.5" || rows[0].Status != 200 {
		t.Fatalf("audit rows %+v, %v; want one from 203.0.113.5", rows, err)
	}
}
