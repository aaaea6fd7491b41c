package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
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

// TestTokenShapesTheAPI: csrd on SoftHSM through p11-kit remoting, whose
// RPC forwards neither EdDSA nor AES-GCM, advertises only what that token
// can make and refuses the rest with a 400 naming the token, before
// anything is created; the same policy on SoftHSM directly offers all.
func TestTokenShapesTheAPI(t *testing.T) {
	ctx := context.Background()
	const label = "csrd-api-remote"
	if err := testHSM.AddToken(label); err != nil {
		t.Fatal(err)
	}
	srv, err := fixture.StartP11Kit(filepath.Join(t.TempDir(), "p11kit"), testHSM.Module, []string{"SOFTHSM2_CONF=" + testHSM.Conf}, label)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	if err := srv.Setenv(); err != nil {
		t.Fatal(err)
	}
	tok, err := hsm.Open(ctx, hsm.Config{Module: srv.Module, TokenLabel: label, PIN: testHSM.PIN, MaxSessions: 4, PoolWaitTimeout: time.Minute}, testLog)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "csrd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	svc := lifecycle.New(lifecycle.HSMToken{Token: tok}, db, policy.Default(), testLog)
	remote := httptest.NewServer(api.New(api.Options{BasePath: "/KeyfactorAPI", Log: testLog, Generator: svc, Pending: svc, NoAuth: true}))
	defer remote.Close()

	algs := func(base string) (primary, alt []string) {
		t.Helper()
		status, raw := getJSON(t, base, "/KeyfactorAPI/EnrollmentPatterns/Settings")
		var st api.PatternSettingsResponse
		if status != http.StatusOK || json.Unmarshal(raw, &st) != nil {
			t.Fatalf("settings: %d %s", status, raw)
		}
		for _, a := range st.Policies.PrimaryKeyAlgorithms {
			primary = append(primary, a.Name)
		}
		for _, a := range st.Policies.AlternativeKeyAlgorithms {
			alt = append(alt, a.Name)
		}
		if n := len(st.Policies.KeyInfo); n != len(primary) {
			t.Errorf("%s: KeyInfo %v, PrimaryKeyAlgorithms %v: want the same algorithms", base, st.Policies.KeyInfo, primary)
		}
		return primary, alt
	}
	directP, directA := algs(testSrv.URL)
	remoteP, remoteA := algs(remote.URL)
	t.Logf("SoftHSM: %v + %v; through p11-kit: %v + %v", directP, directA, remoteP, remoteA)
	if !slices.Contains(directP, "ED25519") || len(directA) == 0 {
		t.Fatalf("the default policy on SoftHSM offers %v + %v; the test needs EdDSA and ML-DSA there", directP, directA)
	}
	if slices.Contains(remoteP, "ED25519") || slices.Contains(remoteP, "ED448") || len(remoteA) != 0 || !slices.Contains(remoteP, "ECC") {
		t.Errorf("through p11-kit csrd advertises %v + %v: EdDSA and ML-DSA it cannot make, or not ECC", remoteP, remoteA)
	}

	before, _ := tok.CountObjects(ctx)
	for _, body := range []string{
		`{"Subject":"CN=ed.example.com","KeyType":"Ed25519"}`,
		`{"Subject":"CN=hybrid.example.com","KeyType":"ECC","KeyLength":256,"AlternativeKeyType":"ML-DSA-65"}`,
	} {
		status, raw, _ := postJSON(t, remote.URL, "/KeyfactorAPI/CSRGeneration/Generate", body)
		if status != http.StatusBadRequest || !strings.Contains(string(raw), api.CodeNotSupported) || !strings.Contains(string(raw), label) {
			t.Errorf("%s: %d %s, want 400 %s naming the token", body, status, raw, api.CodeNotSupported)
		}
	}
	if after, _ := tok.CountObjects(ctx); after != before {
		t.Errorf("refused requests changed the token: %d -> %d objects", before, after)
	}
	status, raw, _ := postJSON(t, remote.URL, "/KeyfactorAPI/CSRGeneration/Generate", `{"Subject":"CN=ecc.example.com","KeyType":"ECC","KeyLength":256}`)
	if status != http.StatusOK {
		t.Errorf("ECC through p11-kit: %d %s", status, raw)
	}
}
