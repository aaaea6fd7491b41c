package api_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

// An operation that destroys or binds key material is on the audit chain
// exactly when it happened: with the audit append failing (a trigger that
// RAISEs, on a real SQLite file), Delete (one and bulk) and Import answer
// an error and leave the key, its record and the token as they were. Once
// the fault is gone the same calls succeed and each names its record.
func TestDestructiveActionsFailClosedWithoutAudit(t *testing.T) {
	ctx := context.Background()
	dbPath := filepath.Join(t.TempDir(), "csrd.db")
	db, err := store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	svc := lifecycle.New(lifecycle.HSMToken{Token: testToken}, db, policy.Default(), testLog)
	srv := httptest.NewServer(api.New(api.Options{BasePath: "/KeyfactorAPI", Log: testLog, Generator: svc, Pending: svc,
		Certificates: svc, NoAuth: true, Audit: db}))
	defer srv.Close()
	call := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+"/KeyfactorAPI"+path, strings.NewReader(body))
		req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	gen := func(cn string) (*store.KeyRecord, string) {
		t.Helper()
		code, body := call(http.MethodPost, "/CSRGeneration/Generate", `{"Subject":"CN=`+cn+`","KeyType":"ECC","KeyLength":256}`)
		if code != http.StatusOK {
			t.Fatalf("generate: %d %s", code, body)
		}
		recs, err := db.ListPending(ctx, store.PendingQuery{SubjectContains: cn, Limit: 1})
		if err != nil || len(recs) != 1 {
			t.Fatalf("record of %s: %v %v", cn, recs, err)
		}
		var csr struct{ CSR string }
		if err := json.Unmarshal([]byte(body), &csr); err != nil {
			t.Fatal(err)
		}
		return recs[0], csr.CSR
	}
	one, _ := gen("fail-closed-1.example")
	bulk, _ := gen("fail-closed-2.example")
	married, csrPEM := gen("fail-closed-3.example")
	ca := fixture.NewCA(t, "API test CA")
	cert := fixture.PEM(ca.IssueCSR(t, csrPEM, time.Now().Add(-time.Minute), time.Now().Add(time.Hour)))

	fault, err := sql.Open("sqlite3", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer fault.Close()
	if _, err := fault.Exec(`CREATE TRIGGER audit_fault BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END`); err != nil {
		t.Fatal(err)
	}
	before, err := db.CountAudit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, path, body string
		rec                      *store.KeyRecord
	}{
		{"delete", http.MethodDelete, fmt.Sprintf("/CSRGeneration/Pending/%d", one.ID), "", one},
		{"bulk delete", http.MethodDelete, "/CSRGeneration/Pending", fmt.Sprintf("[%d]", bulk.ID), bulk},
		{"import", http.MethodPost, "/Certificates/Import", `{"Certificate":` + jsonString(cert) + `}`, married},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := call(tc.method, tc.path, tc.body); code < 500 {
				t.Errorf("with the audit row failing: %d %s; want a 5xx", code, body)
			}
			rec, err := db.Get(ctx, tc.rec.ID)
			if err != nil {
				t.Fatal(err)
			}
			if rec.State != store.StatePending || rec.Intent != store.IntentNone {
				t.Errorf("record after the refused call is %s with intent %q; want pending, no intent", rec.State, rec.Intent)
			}
			classes, err := testToken.ObjectsOf(ctx, hsm.KeyRef{ID: tc.rec.KeyID, Label: tc.rec.KeyLabel})
			if err != nil || fmt.Sprint(classes) != fmt.Sprint([]hsm.ObjectClass{hsm.ClassPublicKey, hsm.ClassPrivateKey}) {
				t.Errorf("token objects after the refused call: %v, %v; want the key pair alone", classes, err)
			}
		})
	}
	if n, err := db.CountAudit(ctx); err != nil || n != before {
		t.Fatalf("audit rows %d -> %d (%v)", before, n, err)
	}

	if _, err := fault.Exec(`DROP TRIGGER audit_fault`); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ method, path, body string }{
		{http.MethodDelete, fmt.Sprintf("/CSRGeneration/Pending/%d", one.ID), ""},
		{http.MethodDelete, "/CSRGeneration/Pending", fmt.Sprintf("[%d]", bulk.ID)},
		{http.MethodPost, "/Certificates/Import", `{"Certificate":` + jsonString(cert) + `}`},
	} {
		if code, body := call(c.method, c.path, c.body); code >= 300 {
			t.Fatalf("%s %s after the fault: %d %s", c.method, c.path, code, body)
		}
	}
	rows, err := db.ListAudit(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	audited := map[int64]string{}
	for _, r := range rows[before:] {
		audited[r.RecordID] = r.Operation + " " + r.Result + " " + r.KeyLabel
	}
	for rec, op := range map[*store.KeyRecord]string{one: "pending_delete", bulk: "pending_delete", married: "import"} {
		if want := op + " ok " + rec.KeyLabel; audited[rec.ID] != want {
			t.Errorf("audit row of record %d: %q, want %q", rec.ID, audited[rec.ID], want)
		}
	}
	if _, err := db.VerifyAudit(ctx); err != nil {
		t.Error(err)
	}
}
