package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/cluster"
	"github.com/csrd/csrd/enroll"
	"github.com/csrd/csrd/lifecycle"
)

// publicRoutes are served without credentials. Anything else must answer
// 401 to a request without them.
var publicRoutes = map[string]bool{
	"GET /keyfactorapi/openapi.json": true,
	"GET /healthz":                   true,
	"GET /readyz":                    true,
	"HEAD /healthz":                  true,
	"HEAD /readyz":                   true,
}

var paramRE = regexp.MustCompile(`\{[^}]+\}|:[^/]+`)

// routeKey normalises "METHOD path" so that echo's lower-cased ":id" and
// the document's "{id}" compare equal.
func routeKey(method, path string) string {
	return strings.ToUpper(method) + " " + paramRE.ReplaceAllString(strings.ToLower(path), "{}")
}

// testServer registers every route group (typed nil use cases: no handler
// runs in these tests) and neither Auth nor NoAuth.
func testServer() *Server {
	var svc *lifecycle.Service
	var fleet *cluster.Forwarder
	var enr *enroll.Service
	return New(Options{BasePath: docBasePath, Log: zerolog.Nop(), Pending: svc, Certificates: svc, Keys: svc, Fleet: fleet,
		Enrollment: enr, KeyLife: enr})
}

// documentedOps returns the document and its operations by routeKey, each
// with its JSON pointer.
func documentedOps(t *testing.T) (*schemaDoc, map[string]docOp) {
	t.Helper()
	d, err := loadDoc(openapiDoc)
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	ops := map[string]docOp{}
	for p, item := range d.root["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options":
				ops[routeKey(method, p)] = docOp{ptr: pointer("paths", p, method), op: op.(map[string]any)}
			default:
				t.Errorf("%s: unexpected member %q", p, method)
			}
		}
	}
	return d, ops
}

type docOp struct {
	ptr string // JSON pointer of the operation object
	op  map[string]any
}

// Every route echo serves is documented and every documented route is
// served. A helper adding a route must describe it.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	s := testServer()
	_, ops := documentedOps(t)
	served := map[string]bool{}
	for _, r := range s.e.Routes() {
		k := routeKey(r.Method, r.Path)
		served[k] = true
		if _, ok := ops[k]; !ok {
			t.Errorf("route %s %s is not in openapi.json", r.Method, r.Path)
		}
	}
	for k := range ops {
		if !served[k] {
			t.Errorf("openapi.json documents %s, which no handler serves", k)
		}
	}
}

// Every example in the document validates against its schema, every $ref
// resolves, and every operation has an id and a success response.
func TestOpenAPIExamplesValidate(t *testing.T) {
	d, ops := documentedOps(t)
	keys := make([]string, 0, len(ops))
	for k := range ops {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ids := map[string]bool{}
	for _, k := range keys {
		op, ptr := ops[k].op, ops[k].ptr
		t.Run(k, func(t *testing.T) {
			id, _ := op["operationId"].(string)
			if id == "" || ids[id] {
				t.Errorf("operationId %q missing or repeated", id)
			}
			ids[id] = true
			checkContent := func(where, contentPtr string) {
				content, err := d.at(contentPtr)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					return
				}
				for mt, media := range content.(map[string]any) {
					m := media.(map[string]any)
					schemaPtr := contentPtr + pointer(mt, "schema")
					if _, ok := m["schema"]; !ok {
						t.Errorf("%s %s: no schema", where, mt)
						continue
					}
					if _, err := d.schema(schemaPtr); err != nil {
						t.Errorf("%s %s: %v", where, mt, err)
						continue
					}
					if ex, ok := m["example"]; ok {
						if err := d.validate(schemaPtr, ex); err != nil {
							t.Errorf("%s %s example: %v", where, mt, err)
						}
					}
				}
			}
			if _, ok := op["requestBody"]; ok {
				rb, r, err := d.resolve(ptr + pointer("requestBody"))
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := r["content"]; ok {
					checkContent("requestBody", rb+pointer("content"))
				}
			}
			success := false
			for code := range op["responses"].(map[string]any) {
				rp, r, err := d.resolve(ptr + pointer("responses", code))
				if err != nil {
					t.Errorf("response %s: %v", code, err)
					continue
				}
				success = success || strings.HasPrefix(code, "2")
				if _, ok := r["content"]; ok {
					checkContent("response "+code, rp+pointer("content"))
				}
			}
			if !success {
				t.Error("no 2xx response documented")
			}
			for i := range asSlice(op["parameters"]) {
				if _, _, err := d.resolve(fmt.Sprintf("%s/parameters/%d", ptr, i)); err != nil {
					t.Errorf("parameter: %v", err)
				}
			}
		})
	}
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// The validator itself rejects what it should, or the example checks above
// prove nothing.
func TestOpenAPIValidatorRejects(t *testing.T) {
	d, _ := documentedOps(t)
	bad := []struct {
		schema string
		value  any
	}{
		{"GenerateResponse", map[string]any{}},
		{"GenerateResponse", map[string]any{"CSR": "not a pem"}},
		{"GenerateResponse", map[string]any{"CSR": "-----BEGIN CERTIFICATE REQUEST-----\n", "Extra": 1.0}},
		{"Error", map[string]any{"ErrorCode": "0x1", "Message": "m"}},
		{"EndpointList", map[string]any{}},
		{"GenerateRequest", map[string]any{"Subject": "CN=x", "KeyType": "RSA", "KeyLength": 1.5}},
		{"GenerateRequest", map[string]any{"Subject": "CN=x", "KeyType": "RSA", "SANs": map[string]any{"dns": "x"}}},
	}
	for _, b := range bad {
		if err := d.validate(pointer("components", "schemas", b.schema), b.value); err == nil {
			t.Errorf("%s accepted %v", b.schema, b.value)
		}
	}
}

// Every Keyfactor route needs a grant decided in routeOperations, and every
// non-public route refuses a request without credentials — so a route
// registered around Server.route cannot skip authentication unnoticed.
func TestEveryRouteIsClassified(t *testing.T) {
	s := testServer() // neither Auth nor NoAuth: everything fails closed
	for _, ep := range s.endpoints {
		method, path, _ := strings.Cut(ep, " ")
		if _, ok := routeOperation(method, path); !ok {
			t.Errorf("%s has no entry in routeOperations (auth_routes.go)", ep)
		}
	}
	for _, r := range s.e.Routes() {
		if publicRoutes[r.Method+" "+r.Path] {
			continue
		}
		path := paramRE.ReplaceAllString(r.Path, "1")
		req := httptest.NewRequest(r.Method, path, nil)
		req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s %s without credentials: %d, want 401", r.Method, r.Path, rec.Code)
		}
	}
}

// The served document follows the configured base path.
func TestOpenAPIServedUnderBasePath(t *testing.T) {
	s := New(Options{BasePath: "/KeyfactorApi", Log: zerolog.Nop(), NoAuth: true})
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/keyfactorapi/OpenAPI.json", nil))
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var doc struct {
		Paths map[string]any `json:"paths"`
	}
	body, _ := io.ReadAll(rec.Body)
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if _, ok := doc.Paths["/KeyfactorApi/CSRGeneration/Generate"]; !ok {
		t.Errorf("paths not rebased: %v", keysOf(doc.Paths))
	}
	if _, ok := doc.Paths["/metrics"]; !ok {
		t.Errorf("/metrics lost: %v", keysOf(doc.Paths))
	}
}

func keysOf(m map[string]any) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return fmt.Sprint(ks)
}
