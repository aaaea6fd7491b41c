package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/csrd/csrd/api"
)

// The EnrollmentPatterns answers, from testdata/policy.yaml, validate too.
func TestOpenAPIDescribesPatternResponses(t *testing.T) {
	base := policyServer(t)
	for _, tt := range []struct {
		path, docPath string
		status        int
	}{
		{"/KeyfactorAPI/EnrollmentPatterns", "/KeyfactorAPI/EnrollmentPatterns", 200},
		{"/KeyfactorAPI/EnrollmentPatterns?ReturnLimit=1&PageReturned=2", "/KeyfactorAPI/EnrollmentPatterns", 200},
		{"/KeyfactorAPI/EnrollmentPatterns/3", "/KeyfactorAPI/EnrollmentPatterns/{id}", 200},
		{"/KeyfactorAPI/EnrollmentPatterns/1", "/KeyfactorAPI/EnrollmentPatterns/{id}", 200},
		{"/KeyfactorAPI/EnrollmentPatterns/99", "/KeyfactorAPI/EnrollmentPatterns/{id}", 404},
		{"/KeyfactorAPI/EnrollmentPatterns/Settings", "/KeyfactorAPI/EnrollmentPatterns/Settings", 200},
	} {
		req, _ := http.NewRequest("GET", base+tt.path, nil)
		req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Fatalf("%s: %d, want %d: %s", tt.path, resp.StatusCode, tt.status, body)
		}
		if err := api.ValidateResponse("get", tt.docPath, tt.status, body); err != nil {
			t.Errorf("%s does not match openapi.json: %v\n%s", tt.path, err, body)
		}
	}
}

// The key lifecycle endpoints' real answers validate.
func TestOpenAPIDescribesLifecycleResponses(t *testing.T) {
	resp := send(t, "POST", generatePath, "application/json", `{"Subject":"CN=openapi.example.com","KeyType":"ECC","KeyLength":256}`, nil)
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	id := loc[strings.LastIndex(loc, "/")+1:]
	if resp.StatusCode != 200 || id == "" {
		t.Fatalf("generate: %d %q", resp.StatusCode, loc)
	}
	pending := "/KeyfactorAPI/CSRGeneration/Pending"
	for _, tt := range []struct {
		method, path, body, docPath string
		status                      int
	}{
		{"GET", pending + "?ReturnLimit=5&SortAscending=1", "", pending, 200},
		{"GET", pending + "/" + id, "", pending + "/{id}", 200},
		{"GET", pending + "/2147483000", "", pending + "/{id}", 404},
		{"GET", pending + "/x", "", pending + "/{id}", 400},
		{"GET", "/csrd/v1/keys?limit=2", "", "/csrd/v1/keys", 200},
		{"GET", "/csrd/v1/keys?state=nope", "", "/csrd/v1/keys", 400},
		{"GET", "/csrd/v1/keys/" + id, "", "/csrd/v1/keys/{id}", 200},
		{"POST", "/KeyfactorAPI/Certificates/Import", `{"Certificate":"bm90IGEgY2VydA=="}`, "/KeyfactorAPI/Certificates/Import", 400},
		{"POST", "/KeyfactorAPI/Certificates/Recover", `{"CertID":2147483000}`, "/KeyfactorAPI/Certificates/Recover", 404},
		{"DELETE", pending, `[]`, pending, 400},
		{"DELETE", pending + "/" + id, "", pending + "/{id}", 204},
		{"GET", "/healthz", "", "/healthz", 200},
		{"GET", "/readyz", "", "/readyz", 200},
	} {
		ct := ""
		if tt.body != "" {
			ct = "application/json"
		}
		resp := send(t, tt.method, tt.path, ct, tt.body, nil)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Fatalf("%s %s: %d, want %d: %s", tt.method, tt.path, resp.StatusCode, tt.status, body)
		}
		if tt.status == 204 {
			continue
		}
		if err := api.ValidateResponse(strings.ToLower(tt.method), tt.docPath, tt.status, body); err != nil {
			t.Errorf("%s %s does not match openapi.json: %v\n%s", tt.method, tt.path, err, body)
		}
	}
}

// Real answers of the real handlers validate against the schemas the
// document gives for them.
func TestOpenAPIDescribesRealResponses(t *testing.T) {
	fx := newAuthFixture(t, 0)
	tests := []struct {
		name    string
		c       call
		docPath string
		status  int
	}{
		{"generate", call{method: "POST", path: generatePath, body: genBody(""), authz: "Bearer " + fx.token}, "/KeyfactorAPI/CSRGeneration/Generate", 200},
		{"generate invalid", call{method: "POST", path: generatePath, body: `{"KeyType":"RSA"}`, authz: "Bearer " + fx.token}, "/KeyfactorAPI/CSRGeneration/Generate", 400},
		{"generate unauthenticated", call{method: "POST", path: generatePath, body: genBody("")}, "/KeyfactorAPI/CSRGeneration/Generate", 401},
		{"generate forbidden", call{method: "POST", path: generatePath, body: genBody(""), authz: basic("alice", alicePass)}, "/KeyfactorAPI/CSRGeneration/Generate", 403},
		{"status", call{method: "GET", path: "/KeyfactorAPI/Status/Endpoints", authz: "Bearer " + fx.token}, "/KeyfactorAPI/Status/Endpoints", 200},
		{"status unauthenticated", call{method: "GET", path: "/KeyfactorAPI/Status/Endpoints", authz: "Bearer nope"}, "/KeyfactorAPI/Status/Endpoints", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.c.method, fx.srv.URL+tt.c.path, nil)
			if tt.c.body != "" {
				req, _ = http.NewRequest(tt.c.method, fx.srv.URL+tt.c.path, strings.NewReader(tt.c.body))
				req.Header.Set("Content-Type", "application/json")
			}
			req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
			if tt.c.authz != "" {
				req.Header.Set("Authorization", tt.c.authz)
			}
			resp, err := fx.client(nil).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if err := api.ValidateResponse("post", tt.docPath, tt.status, body); tt.c.method == "POST" && err != nil {
				t.Errorf("response does not match openapi.json: %v\n%s", err, body)
			}
			if err := api.ValidateResponse("get", tt.docPath, tt.status, body); tt.c.method == "GET" && err != nil {
				t.Errorf("response does not match openapi.json: %v\n%s", err, body)
			}
		})
	}
}
