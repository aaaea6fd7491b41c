package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
)

// sdkKeyInfo is what Keyfactor's v25 SDK decodes from a pattern's
// Policies: the key rules under KeyInfo, snake-case members, int32 sizes.
type sdkKeyInfo struct {
	Policies struct {
		KeyInfo map[string]struct {
			BitLengths []int32  `json:"bit_lengths"`
			Curves     []string `json:"curves"`
		}
	}
}

// TestKeyfactorSDKFidelity checks the members Keyfactor's v25 SDK reads
// and csrd used to leave empty: a pattern's Policies.KeyInfo, Import's
// ImportStatus and JobStatus, and Status/HealthCheck.
func TestKeyfactorSDKFidelity(t *testing.T) {
	base := policyServer(t)
	status, raw := getJSON(t, base, "/KeyfactorAPI/EnrollmentPatterns/3")
	var p sdkKeyInfo
	if status != http.StatusOK || json.Unmarshal(raw, &p) != nil {
		t.Fatalf("pattern 3: %d %s", status, raw)
	}
	rsa, ecdsa := p.Policies.KeyInfo["RSA"], p.Policies.KeyInfo["ECDSA"]
	if len(p.Policies.KeyInfo) != 2 || len(rsa.BitLengths) != 2 || rsa.BitLengths[0] != 3072 || rsa.BitLengths[1] != 4096 ||
		len(ecdsa.Curves) != 1 || ecdsa.Curves[0] != "1.2.840.10045.3.1.7" || ecdsa.BitLengths[0] != 256 {
		t.Errorf("KeyInfo %+v from %s", p.Policies.KeyInfo, raw)
	}
	status, raw = getJSON(t, testSrv.URL, "/KeyfactorAPI/EnrollmentPatterns/Settings")
	if status != http.StatusOK || json.Unmarshal(raw, &p) != nil || len(p.Policies.KeyInfo["RSA"].BitLengths) != 4 ||
		p.Policies.KeyInfo["Ed25519"].BitLengths == nil || p.Policies.KeyInfo["Ed448"].BitLengths == nil {
		t.Errorf("built-in settings KeyInfo: %s", raw)
	}

	_, csr := generateID(t, "fidelity.example.com")
	leaf := fixture.PEM(fixture.NewCA(t, "fidelity CA").IssueCSR(t, csr, time.Now().Add(-time.Minute), time.Now().Add(time.Hour)))
	for i, want := range []int{1, 2} { // new, then already married
		resp := send(t, http.MethodPost, "/KeyfactorAPI/Certificates/Import", "application/json", `{"Certificate":`+jsonString(leaf)+`}`, nil)
		var imp struct{ ImportStatus, JobStatus *int }
		decodeOK(t, resp, &imp)
		if imp.ImportStatus == nil || *imp.ImportStatus != want || imp.JobStatus == nil || *imp.JobStatus != 0 {
			t.Errorf("import %d: ImportStatus %v, JobStatus %v; want %d, 0", i+1, imp.ImportStatus, imp.JobStatus, want)
		}
	}

	resp := send(t, http.MethodGet, "/KeyfactorAPI/Status/HealthCheck", "", "", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("Status/HealthCheck: %d", resp.StatusCode)
	}
	if _, raw = getJSON(t, testSrv.URL, "/KeyfactorAPI/Status/Endpoints"); !strings.Contains(string(raw), `"GET /Status/HealthCheck"`) {
		t.Errorf("Status/Endpoints lacks HealthCheck: %s", raw)
	}
}
