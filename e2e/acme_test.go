package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/enroll"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/store"
)

// kf sends a request the way Keyfactor's Go SDK does: header names in lower
// case, a JSON body with PascalCase names, a new connection per request.
func kf(t testing.TB, d *daemon, method, path, body string, hdr map[string]string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+d.Addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header["x-keyfactor-requested-with"] = []string{"APIClient"}
	req.Header["x-keyfactor-api-version"] = []string{"1"}
	req.Header["accept"] = []string{"application/json"}
	if body != "" {
		req.Header["content-type"] = []string{"application/json; charset=utf-8"}
	}
	for k, v := range hdr {
		req.Header[k] = []string{v}
	}
	c := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b, res.Header
}

// generateKey asks csrd for a key for name (and 127.0.0.1) and returns its
// record id and CSR.
func generateKey(t testing.TB, d *daemon, name string) (int64, string) {
	t.Helper()
	status, b, hdr := kf(t, d, "POST", "/KeyfactorAPI/CSRGeneration/Generate", fmt.Sprintf(
		`{"AlternativeKeyType":null,"Curve":null,"EnrollmentPatternId":null,"KeyLength":256,"KeyType":"ECC",`+
			`"SANs":{"dns":[%q],"ip4":["127.0.0.1"]},"Subject":"CN=%s,O=csrd e2e","Template":null}`, name, name), nil)
	var g struct{ CSR string }
	if status != 200 || json.Unmarshal(b, &g) != nil {
		t.Fatalf("Generate: %d %s", status, b)
	}
	var id int64
	loc := hdr.Get("Location")
	if _, err := fmt.Sscanf(loc[strings.LastIndex(loc, "/")+1:], "%d", &id); err != nil {
		t.Fatalf("Location %q", loc)
	}
	return id, g.CSR
}

// enrollAnswer is Keyfactor's EnrollmentCSREnrollmentResponse.
type enrollAnswer struct {
	CertificateInformation struct {
		SerialNumber       *string
		KeyfactorID        int32
		KeyfactorRequestID int32 `json:"KeyfactorRequestId"`
		Certificates       []string
		RequestDisposition string
		DispositionMessage string
	}
}

// enrollCSR calls Enrollment/CSR as the SDK does.
func enrollCSR(t testing.TB, d *daemon, csrPEM string) (int, enrollAnswer, []byte) {
	t.Helper()
	c, _ := json.Marshal(csrPEM)
	status, b, _ := kf(t, d, "POST", "/KeyfactorAPI/Enrollment/CSR", `{"AdditionalEnrollmentFields":null,"CSR":`+string(c)+
		`,"CertificateAuthority":"pebble","EnrollmentPatternId":null,"IncludeChain":true,"IncludeSubjectHeader":false,`+
		`"Metadata":null,"OwnerRoleId":null,"OwnerRoleName":null,"PrivateKey":null,"SANs":null,"Template":null,"Timestamp":null}`,
		map[string]string{"x-certificateformat": "PEM"})
	var a enrollAnswer
	if status == 200 && json.Unmarshal(b, &a) != nil {
		t.Fatalf("Enrollment/CSR answer: %s", b)
	}
	return status, a, b
}

// keyRecord is a record as csrd's key API shows it.
type keyRecord struct {
	State       string `json:"state"`
	KeyURI      string `json:"key_uri"`
	RenewalOf   int64  `json:"renewal_of"`
	Certificate *struct {
		Serial string `json:"serial"`
	} `json:"certificate"`
}

// keyView reads record id from csrd's key API.
func keyView(t testing.TB, d *daemon, id int64) keyRecord {
	t.Helper()
	status, b, _ := kf(t, d, "GET", fmt.Sprintf("/csrd/v1/keys/%d", id), "", nil)
	var v keyRecord
	if status != 200 || json.Unmarshal(b, &v) != nil {
		t.Fatalf("key %d: %d %s", id, status, b)
	}
	return v
}

func (k keyRecord) serial() string {
	if k.Certificate == nil {
		return ""
	}
	return k.Certificate.Serial
}

// acmeInstance is a csrd instance whose cas: names CA "pebble" at
// directory, trusting roots for its TLS and chainRoots for the chain.
func acmeInstance(t testing.TB, label, directory, roots string, chainRoots []byte, extra ...string) *instance {
	t.Helper()
	chainFile := filepath.Join(t.TempDir(), "chain-roots.pem")
	if err := os.WriteFile(chainFile, chainRoots, 0o600); err != nil {
		t.Fatal(err)
	}
	lines := []string{"cas:", "  - name: pebble", "    acme:",
		"      directory: " + directory, "      roots_file: " + roots, "      chain_roots_file: " + chainFile,
		"      contact: [mailto:pki@example.test]"}
	return newInstance(t, label, "", append(lines, extra...)...)
}

// checkEnrolledInvariants: after a restart, every csrd-<id> object belongs
// to a record that holds a key, every such record has its objects, each
// married record was married by exactly one order (or none: imported), and
// the ACME account key is the one its row names.
func checkEnrolledInvariants(t testing.TB, in *instance) {
	t.Helper()
	ctx := context.Background()
	checkIntegrity(t, in.Database)
	db, err := store.Open(ctx, in.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var records []hsm.Object
	for _, o := range in.freshObjects(t, lifecycle.LabelPrefix) {
		if o.Ref.Label == enroll.AccountLabel("pebble") {
			a, err := db.GetAccount(ctx, store.AccountOf{CA: "pebble", TokenLabel: in.View.Label(), TokenSerial: in.View.Serial()})
			if err != nil || string(a.KeyID) != string(o.Ref.ID) {
				t.Errorf("account key object %v: row %+v, %v", o.Ref, a, err)
			}
			continue
		}
		records = append(records, o)
	}
	for _, p := range judgeObjects(t, ctx, db, records, true).problems {
		t.Error(p)
	}
	married, err := db.ListByState(ctx, store.StateMarried)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range married {
		if o, err := db.LatestOrder(ctx, r.ID); err == nil && o.State != store.OrderMarried {
			t.Errorf("record %d is married; its latest order %d is %s", r.ID, o.ID, o.State)
		}
	}
	if open, _ := db.OpenOrders(ctx); len(open) != 0 {
		t.Errorf("%d orders still open: %+v", len(open), open[0])
	}
}
