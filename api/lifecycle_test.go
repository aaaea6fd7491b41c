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
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/store"
)

const pendingPath = "/KeyfactorAPI/CSRGeneration/Pending"

// generateID makes a P-256 key through the API and returns its record id.
func generateID(t *testing.T, cn string) (int64, string) {
	t.Helper()
	resp := send(t, http.MethodPost, generatePath, "application/json", `{"Subject":"CN=`+cn+`","KeyType":"ECC","KeyLength":256}`, nil)
	var gen struct{ CSR string }
	loc := resp.Header.Get("Location")
	decodeOK(t, resp, &gen)
	var id int64
	if _, err := fmt.Sscanf(loc[strings.LastIndex(loc, "/")+1:], "%d", &id); err != nil {
		t.Fatalf("Location %q: %v", loc, err)
	}
	return id, gen.CSR
}

// wantError checks status, ErrorCode and that the message says something.
func wantError(t *testing.T, resp *http.Response, status int, code, says string) {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e struct{ ErrorCode, Message string }
	if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != status || e.ErrorCode != code || !strings.Contains(e.Message, says) {
		t.Errorf("got %d %s, want %d %s with %q", resp.StatusCode, body, status, code, says)
	}
}

func TestPendingEndpoints(t *testing.T) {
	ctx := context.Background()
	var ids []int64
	for _, cn := range []string{"pend-a.example.net", "pend-b.example.net", "pend-c.example.org"} {
		id, _ := generateID(t, cn)
		ids = append(ids, id)
	}
	t.Cleanup(func() {
		for _, id := range ids {
			send(t, http.MethodDelete, pendingPath+"/"+fmt.Sprint(id), "", "", nil).Body.Close()
		}
	})
	type entry struct {
		ID          int64 `json:"Id"`
		CSR         string
		RequestTime string
		Subject     []string
	}
	list := func(t *testing.T, query string) ([]entry, string) {
		t.Helper()
		resp := send(t, http.MethodGet, pendingPath+"?"+query, "", "", nil)
		total := resp.Header.Get("X-Total-Count")
		var out []entry
		decodeOK(t, resp, &out)
		return out, total
	}
	ours := func(es []entry) []int64 { // other tests share the server
		var got []int64
		for _, e := range es {
			for _, id := range ids {
				if e.ID == id {
					got = append(got, id)
				}
			}
		}
		return got
	}

	t.Run("shape", func(t *testing.T) {
		es, total := list(t, "QueryString=pend-a.example.net")
		if len(es) != 1 || total != "1" {
			t.Fatalf("filter by subject text: %+v (total %s)", es, total)
		}
		e := es[0]
		if _, err := time.Parse(time.RFC3339, e.RequestTime); err != nil || !strings.HasSuffix(e.RequestTime, "Z") {
			t.Errorf("RequestTime %q is not RFC 3339 with a zone", e.RequestTime)
		}
		if !strings.HasPrefix(e.CSR, "-----BEGIN CERTIFICATE REQUEST-----") || len(e.Subject) < 3 ||
			e.Subject[0] != "Subject: CN=pend-a.example.net" || e.Subject[len(e.Subject)-1] != "Hash: SHA256" {
			t.Errorf("entry %+v", e)
		}
		// Keyfactor's raw JSON: a bare array of objects with these names.
		resp := send(t, http.MethodGet, pendingPath+"?ReturnLimit=1", "", "", nil)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasPrefix(string(body), `[{"Id":`) || !strings.Contains(string(body), `"RequestTime":"`) {
			t.Errorf("raw body %s", body)
		}
	})
	t.Run("paging and sorting", func(t *testing.T) {
		q := "QueryString=" + "Subject%20-contains%20%22example.ne%22" + "&SortField=Id"
		asc, total := list(t, q+"&SortAscending=0&ReturnLimit=1&PageReturned=2")
		if fmt.Sprint(ours(asc)) != fmt.Sprint(ids[1:2]) || total != "2" {
			t.Errorf("page 2 of 1, ascending: %v (total %s), want %v", ours(asc), total, ids[1:2])
		}
		desc, _ := list(t, q+"&SortAscending=1")
		if fmt.Sprint(ours(desc)) != fmt.Sprint([]int64{ids[1], ids[0]}) {
			t.Errorf("descending: %v", ours(desc))
		}
		byTime, _ := list(t, "sortfield=requesttime&pq.queryString=pend-&returnLimit=50")
		if fmt.Sprint(ours(byTime)) != fmt.Sprint(ids) {
			t.Errorf("by request time, lower-case names: %v", ours(byTime))
		}
	})
	t.Run("bad queries", func(t *testing.T) {
		for _, q := range []string{"PageReturned=0", "ReturnLimit=1001", "ReturnLimit=x", "SortAscending=2",
			"SortField=Subject", "QueryString=CN%20-startswith%20%22a%22"} {
			wantError(t, send(t, http.MethodGet, pendingPath+"?"+q, "", "", nil), http.StatusBadRequest, "0xA0010002", strings.SplitN(q, "=", 2)[0])
		}
	})
	t.Run("get", func(t *testing.T) {
		resp := send(t, http.MethodGet, pendingPath+"/"+fmt.Sprint(ids[0]), "", "", nil)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), `{"CSRFilePath":null,"CSRText":"-----BEGIN CERTIFICATE REQUEST-----`) {
			t.Errorf("GET pending/id = %d %s", resp.StatusCode, body)
		}
		wantError(t, send(t, http.MethodGet, pendingPath+"/99999", "", "", nil), 404, "0xA0040001", "no pending CSR with Id 99999")
		wantError(t, send(t, http.MethodGet, pendingPath+"/abc", "", "", nil), 400, "0xA0010002", "Id")
		wantError(t, send(t, http.MethodGet, pendingPath+"/1", "", "", map[string]string{"X-Keyfactor-Requested-With": ""}), 400, "0xA0010003", "X-Keyfactor-Requested-With")
	})
	t.Run("delete", func(t *testing.T) {
		id, _ := generateID(t, "delete-one.example.com")
		rec, _ := testStore.Get(ctx, id)
		ref := hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}
		before, _ := testToken.CountObjects(ctx)
		resp := send(t, http.MethodDelete, pendingPath+"/"+fmt.Sprint(id), "", "", nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("DELETE = %d", resp.StatusCode)
		}
		if n, _ := testToken.CountObjects(ctx); n != before-2 {
			t.Errorf("token objects %d -> %d, want the key pair gone", before, n)
		}
		if cs, err := testToken.ObjectsOf(ctx, ref); err != nil || len(cs) != 0 {
			t.Errorf("direct lookup: %v %v", cs, err)
		}
		if rec, _ := testStore.Get(ctx, id); rec.State != store.StateDeleted {
			t.Errorf("record is %s", rec.State)
		}
		wantError(t, send(t, http.MethodDelete, pendingPath+"/"+fmt.Sprint(id), "", "", nil), 404, "0xA0040001", "deleted")
		wantError(t, send(t, http.MethodGet, pendingPath+"/"+fmt.Sprint(id), "", "", nil), 404, "0xA0040001", "deleted")
	})
	t.Run("bulk delete", func(t *testing.T) {
		a, _ := generateID(t, "bulk-a.example.com")
		b, _ := generateID(t, "bulk-b.example.com")
		before, _ := testToken.CountObjects(ctx)
		wantError(t, send(t, http.MethodDelete, pendingPath, "application/json", fmt.Sprintf("[%d,424242,%d]", a, b), nil),
			404, "0xA0040001", "424242")
		if n, _ := testToken.CountObjects(ctx); n != before {
			t.Errorf("a bulk delete with a bad id destroyed keys: %d -> %d", before, n)
		}
		for _, bad := range []struct{ body, says string }{
			{`[]`, "at least one Id"}, {`[0]`, "Id 0"}, {`["x"]`, "body"}, {`{"Ids":[1]}`, "JSON array"},
			{`[3000000000]`, "Id 3000000000"},
		} {
			resp := send(t, http.MethodDelete, pendingPath, "application/json", bad.body, nil)
			if resp.StatusCode != 400 {
				t.Errorf("bulk delete %s = %d", bad.body, resp.StatusCode)
			}
			wantError(t, resp, 400, map[bool]string{true: "0xA0010001", false: "0xA0010002"}[bad.body[0] == '{'], bad.says)
		}
		resp := send(t, http.MethodDelete, pendingPath, "application/json", fmt.Sprintf("[%d,%d]", a, b), nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("bulk delete = %d", resp.StatusCode)
		}
		if n, _ := testToken.CountObjects(ctx); n != before-4 {
			t.Errorf("token objects %d -> %d, want 2 key pairs gone", before, n)
		}
	})
}

func pemOf(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestImportAndRecoverEndpoints(t *testing.T) {
	ctx := context.Background()
	ca := fixture.NewCA(t, "API test CA")
	id, csrPEM := generateID(t, "import.example.com")
	csr := fixture.ParseCSR(t, csrPEM)
	issue := func(serial int64, nb, na time.Time) []byte {
		tmpl := fixture.ForCSR(csr)
		tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = big.NewInt(serial), nb, na
		return ca.Issue(t, tmpl, csr.PublicKey).Raw
	}
	now := time.Now()
	good := issue(7001, now.Add(-time.Minute), now.Add(time.Hour))
	importPath := "/KeyfactorAPI/Certificates/Import"
	post := func(body string) *http.Response {
		return send(t, http.MethodPost, importPath, "application/json", body, nil)
	}
	// A key csrd never made, and unusable certificates.
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	strangerDER := ca.Issue(t, &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "x"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)}, stranger.Public()).Raw
	expired := issue(7002, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	for _, tc := range []struct {
		name, body string
		status     int
		code, says string
	}{
		{"unknown key", `{"Certificate":` + jsonString(pemOf(strangerDER)) + `}`, 404, "0xA0040001", "no key generated by this csrd"},
		{"malformed", `{"Certificate":"MIIBCgKCAQEA"}`, 400, "0xA0020003", "not a base64 DER X.509 certificate"},
		{"expired", `{"Certificate":"` + base64.StdEncoding.EncodeToString(expired) + `"}`, 400, "0xA0020003", "expired at"},
		{"missing", `{}`, 400, "0xA0010002", "Certificate is required"},
		{"PFX password", `{"Certificate":"x","Password":"secret"}`, 400, "0xA0010002", "PFX"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantError(t, post(tc.body), tc.status, tc.code, tc.says) })
	}

	var first, again struct {
		ID             int64 `json:"Id"`
		CertificateID  int64 `json:"CertificateId"`
		Thumbprint     string
		SerialNumber   string
		KeyURI         string `json:"KeyUri"`
		NotAfter       string
		AlreadyMarried bool
	}
	decodeOK(t, post(`{"Certificate":`+jsonString(pemOf(good))+`}`), &first)
	if first.ID != id || first.CertificateID != id || len(first.Thumbprint) != 40 || first.SerialNumber != "1B59" ||
		!strings.HasPrefix(first.KeyURI, "pkcs11:token=csrd-api-test;serial=") || first.AlreadyMarried {
		t.Errorf("import = %+v", first)
	}
	decodeOK(t, post(`{"certificate":"`+base64.StdEncoding.EncodeToString(good)+`"}`), &again)
	if !again.AlreadyMarried || again.Thumbprint != first.Thumbprint || again.KeyURI != first.KeyURI {
		t.Errorf("same certificate twice = %+v, want idempotent", again)
	}
	second := issue(7003, now.Add(-time.Minute), now.Add(time.Hour))
	wantError(t, post(`{"Certificate":`+jsonString(pemOf(second))+`}`), 409, "0xA0040003", "already married")
	wantError(t, send(t, http.MethodGet, pendingPath+"/"+fmt.Sprint(id), "", "", nil), 404, "0xA0040001", "imported")

	t.Run("recover", func(t *testing.T) {
		rp := "/KeyfactorAPI/Certificates/Recover"
		for _, body := range []string{
			fmt.Sprintf(`{"Password":"p","CertID":%d}`, id),
			`{"Password":"p","Thumbprint":"` + first.Thumbprint + `"}`,
			`{"Password":"p","SerialNumber":"1B59","IssuerDN":"CN=API test CA"}`,
		} {
			wantError(t, send(t, http.MethodPost, rp, "application/json", body, nil), 400, "0xA0030003", first.KeyURI)
		}
		wantError(t, send(t, http.MethodPost, rp, "application/json", `{"Password":"p","CertID":999999}`, nil), 404, "0xA0040001", "no certificate")
		wantError(t, send(t, http.MethodPost, rp, "application/json", `{"Password":"p"}`, nil), 400, "0xA0010002", "CertID")
	})

	t.Run("keys", func(t *testing.T) {
		resp := send(t, http.MethodGet, fmt.Sprintf("/csrd/v1/keys/%d", id), "", "", map[string]string{"X-Keyfactor-Requested-With": ""})
		var k struct {
			ID          int64           `json:"id"`
			State       string          `json:"state"`
			KeyLabel    string          `json:"key_label"`
			KeyID       string          `json:"key_id"`
			KeyURI      string          `json:"key_uri"`
			TokenLabel  string          `json:"token_label"`
			Decision    json.RawMessage `json:"policy_decision"`
			Certificate *struct {
				Thumbprint string `json:"thumbprint"`
				NotAfter   string `json:"not_after"`
				PEM        string `json:"pem"`
			} `json:"certificate"`
		}
		decodeOK(t, resp, &k)
		if k.ID != id || k.State != "married" || k.KeyURI != first.KeyURI || len(k.KeyID) != 32 || k.TokenLabel != "csrd-api-test" ||
			len(k.Decision) == 0 || k.Certificate == nil || k.Certificate.Thumbprint != first.Thumbprint || k.Certificate.PEM != pemOf(good) {
			t.Errorf("key record %+v", k)
		}
		var page struct {
			Keys []struct {
				ID    int64  `json:"id"`
				State string `json:"state"`
			} `json:"keys"`
			NextAfter *int64 `json:"next_after"`
		}
		decodeOK(t, send(t, http.MethodGet, "/csrd/v1/keys?state=married&limit=1", "", "", nil), &page)
		if len(page.Keys) != 1 || page.Keys[0].State != "married" || page.NextAfter == nil {
			t.Errorf("married page = %+v", page)
		}
		wantError(t, send(t, http.MethodGet, "/csrd/v1/keys?state=bogus", "", "", nil), 400, "0xA0010002", "state")
		wantError(t, send(t, http.MethodGet, "/csrd/v1/keys/987654", "", "", nil), 404, "0xA0040001", "no key record")
	})
	rec, _ := testStore.Get(ctx, id)
	_ = testToken.DestroyKey(ctx, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel})
}
