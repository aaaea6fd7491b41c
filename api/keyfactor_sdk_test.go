package api_test

import (
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sdkClient behaves like a client built on Keyfactor's official SDK (v25):
// HTTPS only, credentials on every request (Basic with DOMAIN\user), header
// names in lower case, a new connection per request, JSON bodies with every
// field present (unset ones null, KeyType "" when unset) and keys sorted,
// and Status/Endpoints called before anything else.
type sdkClient struct {
	t     *testing.T
	fx    *authFixture
	authz string
	hc    *http.Client
}

func newSDKClient(t *testing.T, fx *authFixture, authz string) *sdkClient {
	t.Helper()
	tr := fx.client(nil).Transport.(*http.Transport)
	tr.DisableKeepAlives = true
	tr.ForceAttemptHTTP2 = false // the SDK's HttpClient speaks HTTP/1.1
	c := &sdkClient{t: t, fx: fx, authz: authz, hc: &http.Client{Transport: tr}}
	// The SDK refuses to start unless this is a 200 with an array of strings.
	status, body, hdr := c.do("GET", "/KeyfactorAPI/Status/Endpoints", "")
	var eps []string
	if status != 200 || !strings.Contains(hdr.Get("Content-Type"), "application/json") || json.Unmarshal(body, &eps) != nil {
		t.Fatalf("Status/Endpoints: %d %q %s", status, hdr.Get("Content-Type"), body)
	}
	return c
}

func (c *sdkClient) do(method, path, body string) (int, []byte, http.Header) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.fx.srv.URL+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if !strings.HasPrefix(req.URL.Scheme, "https") {
		c.t.Fatal("the SDK speaks HTTPS only")
	}
	// Assigned directly so Go does not canonicalise the names.
	req.Header["authorization"] = []string{c.authz}
	req.Header["x-keyfactor-requested-with"] = []string{"APIClient"}
	req.Header["x-keyfactor-api-version"] = []string{"1"}
	req.Header["accept"] = []string{"application/json"}
	if body != "" {
		req.Header["content-type"] = []string{"application/json; charset=utf-8"}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func TestKeyfactorSDKEmulation(t *testing.T) {
	// csrd's own TLS configuration, as cmd/csrd serves it with tls.cert_file.
	fx := newAuthFixtureTLS(t, 5, tlsCSRD)
	c := newSDKClient(t, fx, basic(`KEYEXAMPLE\svc-enroll`, enrollPass))

	// Sorted keys, every field present, as the SDK serialises its model.
	body := `{"AlternativeCurve":null,"AlternativeKeyLength":null,"AlternativeKeyType":null,"Curve":null,` +
		`"EnrollmentPatternId":null,"KeyLength":256,"KeyType":"ECC","SANs":{"dns":["sdk.keyexample.com"]},` +
		`"Subject":"CN=sdk.keyexample.com,O=\"Key Example, Inc.\"","Template":null}`
	status, b, hdr := c.do("POST", "/KeyfactorAPI/CSRGeneration/Generate", body)
	if status != 200 || !strings.Contains(hdr.Get("Content-Type"), "application/json") {
		t.Fatalf("Generate: %d %q %s", status, hdr.Get("Content-Type"), b)
	}
	var res struct{ CSR *string }
	if err := json.Unmarshal(b, &res); err != nil || res.CSR == nil {
		t.Fatalf("Generate body %s: the SDK would take this as success without a CSR", b)
	}
	if blk, _ := pem.Decode([]byte(*res.CSR)); blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("CSR is not PEM: %q", *res.CSR)
	}
	loc := hdr.Get("Location")
	if !strings.HasPrefix(loc, "/KeyfactorAPI/CSRGeneration/Pending/") {
		t.Fatalf("Location %q", loc)
	}
	id := loc[strings.LastIndex(loc, "/")+1:]

	// Pending list: a bare array; RequestTime RFC 3339 with a zone; Id a
	// signed 32-bit number; Subject an array of strings.
	status, b, hdr = c.do("GET", "/KeyfactorAPI/CSRGeneration/Pending?PageReturned=1&ReturnLimit=50&SortAscending=1", "")
	var list []struct {
		ID          int32     `json:"Id"`
		CSR         string    `json:"CSR"`
		RequestTime time.Time `json:"RequestTime"`
		Subject     []string  `json:"Subject"`
	}
	if status != 200 || !strings.Contains(hdr.Get("Content-Type"), "application/json") || json.Unmarshal(b, &list) != nil {
		t.Fatalf("Pending list: %d %s", status, b)
	}
	found := false
	for _, p := range list {
		if strconv.Itoa(int(p.ID)) == id {
			found = p.CSR == *res.CSR && len(p.Subject) > 0 && !p.RequestTime.IsZero()
		}
	}
	if !found {
		t.Fatalf("record %s not in the pending list as generated: %s", id, b)
	}
	status, b, _ = c.do("GET", "/KeyfactorAPI/CSRGeneration/Pending/"+id, "")
	var one struct {
		CSRFilePath *string
		CSRText     string
	}
	if status != 200 || json.Unmarshal(b, &one) != nil || one.CSRText != *res.CSR {
		t.Fatalf("Pending get: %d %s", status, b)
	}
	if status, b, _ = c.do("DELETE", "/KeyfactorAPI/CSRGeneration/Pending/"+id, ""); status != 204 {
		t.Fatalf("Pending delete: %d %s", status, b)
	}
	if status, _, _ = c.do("GET", "/KeyfactorAPI/CSRGeneration/Pending/"+id, ""); status != 404 {
		t.Fatalf("Pending get after delete: %d, want 404", status)
	}

	// A client with the wrong password gets Keyfactor's 401, not a crash.
	bad := &sdkClient{t: t, fx: fx, authz: basic(`KEYEXAMPLE\alice`, "nope"), hc: c.hc}
	if status, b, _ := bad.do("GET", "/KeyfactorAPI/Status/Endpoints", ""); status != 401 || !strings.Contains(string(b), `"ErrorCode"`) {
		t.Errorf("wrong password: %d %s", status, b)
	}
}
