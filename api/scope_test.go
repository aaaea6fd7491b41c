package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/auth"
	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/metrics"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

// scopeFixture is the real server with authentication over a database of
// its own, so that lists and counts hold only the records a test made.
type scopeFixture struct {
	srv *httptest.Server
	db  *store.Store
}

const scopePass = "scope-pass-0123456789"

// scopeUsers: every user but admin may do all a pending workflow needs;
// their grants differ only in scope.
var scopeUsers = map[string]auth.Grants{
	"admin": {Operations: []auth.Operation{auth.OpAdmin}},
	"p1":    {Operations: workflowOps, EnrollmentPatterns: []int{1}},
	"web":   {Operations: workflowOps, Templates: []string{"WebServer"}},
	"any":   {Operations: workflowOps},
}

var workflowOps = []auth.Operation{auth.OpGenerate, auth.OpPendingRead, auth.OpPendingDelete, auth.OpImport}

func newScopeFixture(t *testing.T) *scopeFixture {
	t.Helper()
	s, db, _ := authedServer(t, scopeUsers, api.Options{})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &scopeFixture{srv: srv, db: db}
}

// authedServer is the real API with authentication for users (password
// scopePass) over a database of its own and the real use cases; o adds
// options (a nil o.Generator means the use case).
func authedServer(t *testing.T, users map[string]auth.Grants, o api.Options) (*api.Server, *store.Store, *lifecycle.Service) {
	t.Helper()
	af := &auth.File{}
	for name, g := range users {
		af.Users = append(af.Users, auth.User{Name: name, PasswordHash: hash(t, scopePass), Grants: g})
	}
	path := filepath.Join(t.TempDir(), "auth.yaml")
	if err := af.Save(path); err != nil {
		t.Fatal(err)
	}
	a, err := auth.Open(path, testLog, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "csrd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc := lifecycle.New(lifecycle.HSMToken{Token: testToken}, db, policy.Default(), testLog)
	o.BasePath, o.Log, o.Pending, o.Certificates = "/KeyfactorAPI", testLog, svc, svc
	o.Auth, o.Audit, o.Metrics = a, db, metrics.New(metrics.Sources{})
	if o.Generator == nil {
		o.Generator = svc
	}
	return api.New(o), db, svc
}

// call sends a request as user and returns status, body and X-Total-Count.
func (fx *scopeFixture) call(t *testing.T, user, method, path, body string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, fx.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
	req.Header.Set("Authorization", basic(user, scopePass))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("X-Total-Count")
}

// generate makes a key as admin for the target given (JSON members) and
// returns its record id and CSR.
func (fx *scopeFixture) generate(t *testing.T, cn, target string) (int64, string) {
	t.Helper()
	status, body, _ := fx.call(t, "admin", http.MethodPost, generatePath,
		`{"Subject":"CN=`+cn+`","KeyType":"ECC","KeyLength":256`+target+`}`)
	var gen struct{ CSR string }
	if status != http.StatusOK || json.Unmarshal([]byte(body), &gen) != nil {
		t.Fatalf("generate %s: %d %s", cn, status, body)
	}
	recs, err := fx.db.ListKeys(context.Background(), store.KeyQuery{Limit: store.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	return recs[len(recs)-1].ID, gen.CSR
}

func (fx *scopeFixture) pendingIDs(t *testing.T, user, query string) ([]int64, string) {
	t.Helper()
	status, body, total := fx.call(t, user, http.MethodGet, pendingPath+query, "")
	var list []struct {
		ID int64 `json:"Id"`
	}
	if status != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil {
		t.Fatalf("list as %s: %d %s", user, status, body)
	}
	var ids []int64
	for _, e := range list {
		ids = append(ids, e.ID)
	}
	return ids, total
}

// idsIn matches the record ids and key digests a message may name.
var idsIn = regexp.MustCompile(`\b[0-9]+\b|[0-9a-f]{64}`)

// sameAnswer checks that two answers are the same but for the ids they name.
func sameAnswer(t *testing.T, what string, status int, body string, wantStatus int, wantBody string) {
	t.Helper()
	norm := func(s string) string { return idsIn.ReplaceAllString(s, "N") }
	if status != wantStatus || norm(body) != norm(wantBody) {
		t.Errorf("%s: %d %s\nwant as for a record that does not exist: %d %s", what, status, body, wantStatus, wantBody)
	}
}

// TestPendingScope: a user whose grant is scoped to enrollment pattern 1
// (or to a template) reads, pages, counts, deletes, imports to and recovers
// only the records made for its scope; every other record answers exactly
// as one that does not exist, and is left as it was. Unscoped grants see
// everything.
func TestPendingScope(t *testing.T) {
	ctx := context.Background()
	fx := newScopeFixture(t)
	ca := fixture.NewCA(t, "API test CA")
	p1a, p1aCSR := fx.generate(t, "p1-a", `,"EnrollmentPatternId":1`)
	p1b, _ := fx.generate(t, "p1-b", `,"EnrollmentPatternId":1`)
	p3a, p3aCSR := fx.generate(t, "p3-a", `,"EnrollmentPatternId":3`)
	p3b, p3bCSR := fx.generate(t, "p3-b", `,"EnrollmentPatternId":3`)
	web, _ := fx.generate(t, "web", `,"Template":"WebServer"`)
	none, _ := fx.generate(t, "none", ``)
	const absent = 999999
	t.Cleanup(func() {
		for _, id := range []int64{p1a, p1b, p3a, p3b, web, none} {
			if rec, err := fx.db.Get(ctx, id); err == nil {
				_ = testToken.DestroyKey(ctx, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel})
			}
		}
	})
	// p3-b is married (as admin), so there is something to recover.
	nb, na := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	p3bCert := base64.StdEncoding.EncodeToString(issueDER(t, ca, p3bCSR, 31, nb, na))
	if status, body, _ := fx.call(t, "admin", http.MethodPost, "/KeyfactorAPI/Certificates/Import", `{"Certificate":"`+p3bCert+`"}`); status != http.StatusOK {
		t.Fatalf("import as admin: %d %s", status, body)
	}

	t.Run("list, count and pages", func(t *testing.T) {
		for _, tc := range []struct {
			user string
			want []int64
		}{
			{"p1", []int64{p1a, p1b}},
			{"web", []int64{web}},
			{"any", []int64{p1a, p1b, p3a, web, none}},
			{"admin", []int64{p1a, p1b, p3a, web, none}},
		} {
			ids, total := fx.pendingIDs(t, tc.user, "?SortField=Id")
			if !slices.Equal(ids, tc.want) || total != fmt.Sprint(len(tc.want)) {
				t.Errorf("%s lists %v (X-Total-Count %s), want %v", tc.user, ids, total, tc.want)
			}
		}
		for page, want := range map[int][]int64{1: {p1a}, 2: {p1b}, 3: nil} {
			ids, total := fx.pendingIDs(t, "p1", fmt.Sprintf("?SortField=Id&ReturnLimit=1&PageReturned=%d", page))
			if !slices.Equal(ids, want) || total != "2" {
				t.Errorf("p1 page %d of 1: %v (X-Total-Count %s), want %v of 2", page, ids, total, want)
			}
		}
	})

	t.Run("get", func(t *testing.T) {
		ws, wb, _ := fx.call(t, "p1", http.MethodGet, pendingPath+fmt.Sprint("/", absent), "")
		for _, id := range []int64{p3a, p3b, web, none} {
			s, b, _ := fx.call(t, "p1", http.MethodGet, pendingPath+fmt.Sprint("/", id), "")
			sameAnswer(t, fmt.Sprintf("p1 GET record %d", id), s, b, ws, wb)
		}
		if s, b, _ := fx.call(t, "p1", http.MethodGet, pendingPath+fmt.Sprint("/", p1a), ""); s != http.StatusOK {
			t.Errorf("p1 GET its own record: %d %s", s, b)
		}
		if s, b, _ := fx.call(t, "web", http.MethodGet, pendingPath+fmt.Sprint("/", web), ""); s != http.StatusOK {
			t.Errorf("web GET its template's record: %d %s", s, b)
		}
	})

	t.Run("delete", func(t *testing.T) {
		ws, wb, _ := fx.call(t, "p1", http.MethodDelete, pendingPath+fmt.Sprint("/", absent), "")
		s, b, _ := fx.call(t, "p1", http.MethodDelete, pendingPath+fmt.Sprint("/", p3a), "")
		sameAnswer(t, "p1 DELETE a pattern-3 record", s, b, ws, wb)
		ws, wb, _ = fx.call(t, "p1", http.MethodDelete, pendingPath, fmt.Sprintf("[%d,%d]", p1a, absent))
		s, b, _ = fx.call(t, "p1", http.MethodDelete, pendingPath, fmt.Sprintf("[%d,%d]", p1a, p3a))
		sameAnswer(t, "p1 bulk DELETE with a pattern-3 record", s, b, ws, wb)
		for _, id := range []int64{p1a, p3a} {
			rec, err := fx.db.Get(ctx, id)
			if err != nil || rec.State != store.StatePending {
				t.Fatalf("record %d after refused deletes: %+v, %v", id, rec, err)
			}
			if cs, _ := testToken.ObjectsOf(ctx, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}); len(cs) != 2 {
				t.Errorf("record %d's key after refused deletes: %v", id, cs)
			}
		}
		if s, b, _ := fx.call(t, "p1", http.MethodDelete, pendingPath+fmt.Sprint("/", p1b), ""); s != http.StatusNoContent {
			t.Errorf("p1 DELETE its own record: %d %s", s, b)
		}
	})

	t.Run("import and recover", func(t *testing.T) {
		foreign := base64.StdEncoding.EncodeToString(issueDER(t, ca, csrOfUnknownKey(t), 32, nb, na))
		ws, wb, _ := fx.call(t, "p1", http.MethodPost, "/KeyfactorAPI/Certificates/Import", `{"Certificate":"`+foreign+`"}`)
		p3aCert := base64.StdEncoding.EncodeToString(issueDER(t, ca, p3aCSR, 33, nb, na))
		for _, cert := range []string{p3aCert, p3bCert} {
			s, b, _ := fx.call(t, "p1", http.MethodPost, "/KeyfactorAPI/Certificates/Import", `{"Certificate":"`+cert+`"}`)
			sameAnswer(t, "p1 Import for a pattern-3 record", s, b, ws, wb)
		}
		if rec, _ := fx.db.Get(ctx, p3a); rec.State != store.StatePending {
			t.Errorf("pattern-3 record after p1's import: %s", rec.State)
		}
		ws, wb, _ = fx.call(t, "p1", http.MethodPost, "/KeyfactorAPI/Certificates/Recover", fmt.Sprintf(`{"CertID":%d}`, absent))
		s, b, _ := fx.call(t, "p1", http.MethodPost, "/KeyfactorAPI/Certificates/Recover", fmt.Sprintf(`{"CertID":%d}`, p3b))
		sameAnswer(t, "p1 Recover a pattern-3 certificate", s, b, ws, wb)
		p1aCert := base64.StdEncoding.EncodeToString(issueDER(t, ca, p1aCSR, 34, nb, na))
		if s, b, _ := fx.call(t, "p1", http.MethodPost, "/KeyfactorAPI/Certificates/Import", `{"Certificate":"`+p1aCert+`"}`); s != http.StatusOK {
			t.Errorf("p1 Import for its own record: %d %s", s, b)
		}
		if s, b, _ := fx.call(t, "any", http.MethodPost, "/KeyfactorAPI/Certificates/Recover", fmt.Sprintf(`{"CertID":%d}`, p3b)); !strings.Contains(b, api.CodeNotExtractable) {
			t.Errorf("unscoped Recover of a married record: %d %s", s, b)
		}
	})
}

// csrOfUnknownKey is a CSR for a key csrd never made.
func csrOfUnknownKey(t *testing.T) string {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "stranger"}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// issueDER answers csrPEM from ca with the given serial and validity.
func issueDER(t *testing.T, ca *fixture.CA, csrPEM string, serial int64, nb, na time.Time) []byte {
	t.Helper()
	csr := fixture.ParseCSR(t, csrPEM)
	tmpl := fixture.ForCSR(csr)
	tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = big.NewInt(serial), nb, na
	return ca.Issue(t, tmpl, csr.PublicKey).Raw
}
