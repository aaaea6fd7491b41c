package lifecycle_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

// matrixToken is one token of the test matrix, open for the flow tests
// alone (a reconciliation compares the whole token with one database).
type matrixToken struct {
	name    string
	module  string
	label   string
	pinFile string
	pin     string
	tok     *hsm.Token
	// refusals are the requests this token cannot carry out, by what
	// KeyRequest.String says.
	refusals map[string]bool
	hybrid   bool // can seal an ML-DSA seed (AES-GCM)
}

var matrixState struct {
	sync.Mutex
	dir   string
	kinds map[string]*matrixToken
	errs  map[string]error
	stops []func()
}

// matrix returns SoftHSM directly, SoftHSM through p11-kit remoting and
// (not under -short) a TPM 2.0 through tpm2-pkcs11, each started at first
// use and stopped by TestMain (stopMatrix).
func matrix(t *testing.T) []*matrixToken {
	t.Helper()
	names := []string{"softhsm", "p11kit", "tpm"}
	if testing.Short() {
		names = names[:2]
		t.Log("-short: the TPM token is left out of the matrix")
	}
	var out []*matrixToken
	for _, n := range names {
		k, err := startKind(n)
		if err != nil {
			t.Fatalf("%s token: %v", n, err)
		}
		out = append(out, k)
	}
	return out
}

func startKind(name string) (*matrixToken, error) {
	matrixState.Lock()
	defer matrixState.Unlock()
	if k, ok := matrixState.kinds[name]; ok {
		return k, matrixState.errs[name]
	}
	if matrixState.kinds == nil {
		matrixState.kinds, matrixState.errs = map[string]*matrixToken{}, map[string]error{}
	}
	var err error
	if matrixState.dir == "" {
		matrixState.dir, err = os.MkdirTemp("", "csrd-lifecycle-matrix-*")
	}
	var k *matrixToken
	if err == nil {
		k, err = map[string]func(string) (*matrixToken, error){
			"softhsm": startSoftHSM, "p11kit": startRemote, "tpm": startTPM,
		}[name](matrixState.dir)
	}
	if err == nil {
		k.tok, err = openToken(k.module, k.label, k.pin)
	}
	if err == nil {
		matrixState.stops = append(matrixState.stops, func() { k.tok.Close() })
	}
	matrixState.kinds[name], matrixState.errs[name] = k, err
	return k, err
}

// SoftHSM tokens of the matrix, made by TestMain: a module in this process
// sees only the tokens that existed when it was initialised.
const (
	flowLabel   = "csrd-lifecycle-flow"
	remoteLabel = "csrd-lifecycle-remote"
)

func startSoftHSM(string) (*matrixToken, error) {
	return &matrixToken{name: "softhsm", module: testTok.Module, label: flowLabel, pinFile: testTok.PINFile, pin: testTok.PIN, hybrid: true}, nil
}

func startRemote(dir string) (*matrixToken, error) {
	label := remoteLabel
	srv, err := fixture.StartP11Kit(filepath.Join(dir, "p11kit"), testTok.Module, []string{"SOFTHSM2_CONF=" + testTok.Conf}, label)
	if err != nil {
		return nil, err
	}
	matrixState.stops = append(matrixState.stops, srv.Stop)
	if err := srv.Setenv(); err != nil {
		return nil, err
	}
	return &matrixToken{name: "p11kit", module: srv.Module, label: label, pinFile: testTok.PINFile, pin: testTok.PIN,
		// p11-kit's RPC forwards neither EdDSA nor AES-GCM.
		refusals: map[string]bool{"ED25519": true, "ED448": true}}, nil
}

func startTPM(dir string) (*matrixToken, error) {
	const label = "csrd-lifecycle-tpm"
	tpm, err := fixture.StartTPM(filepath.Join(dir, "tpm"), label)
	if err != nil {
		return nil, err
	}
	matrixState.stops = append(matrixState.stops, tpm.Stop)
	if err := tpm.Setenv(); err != nil {
		return nil, err
	}
	return &matrixToken{name: "tpm", module: tpm.Module, label: label, pinFile: tpm.PINFile, pin: tpm.PIN,
		refusals: map[string]bool{"RSA-4096": true, "ECC-521": true, "ED25519": true, "ED448": true}}, nil
}

// stopMatrix closes the matrix's tokens and stops their servers.
func stopMatrix() {
	matrixState.Lock()
	defer matrixState.Unlock()
	for i := len(matrixState.stops) - 1; i >= 0; i-- {
		matrixState.stops[i]()
	}
	if matrixState.dir != "" {
		_ = os.RemoveAll(matrixState.dir)
	}
}

// TestFlowOnEveryToken runs a key's whole life on every token of the
// matrix: Generate, the pending list and CSR, marriage to an issued
// certificate, Delete of another, a clean reconciliation; requests a
// token cannot carry out are refused before anything is created.
func TestFlowOnEveryToken(t *testing.T) {
	for _, k := range matrix(t) {
		t.Run(k.name, func(t *testing.T) { testFlow(t, k) })
	}
}

// TestAdmitRecordsProfile: admitting a token records the profile it
// learned at its connection, by its label and serial, as csrd's.
func TestAdmitRecordsProfile(t *testing.T) {
	for _, k := range matrix(t) {
		t.Run(k.name, func(t *testing.T) {
			ctx := context.Background()
			svc, db := newService(t, k.tok)
			if _, err := svc.Admit(ctx, lifecycle.HSMToken{Token: k.tok}); err != nil {
				t.Fatal(err)
			}
			got, err := db.TokenProfiles(ctx)
			if err != nil || len(got) != 1 {
				t.Fatalf("recorded profiles %+v, %v", got, err)
			}
			var doc struct {
				Label, Serial string
				Keys          []struct{ Type string }
			}
			p := got[0]
			if err := json.Unmarshal(p.Profile, &doc); err != nil || p.TokenLabel != k.tok.Label() || p.TokenSerial != k.tok.Serial() ||
				p.LearnedBy != "csrd" || doc.Label != k.tok.Label() || doc.Serial != k.tok.Serial() || len(doc.Keys) != len(k.tok.Profile().Keys) {
				t.Errorf("recorded %s/%s by %s: %s (%v)", p.TokenLabel, p.TokenSerial, p.LearnedBy, p.Profile, err)
			}
		})
	}
}

func testFlow(t *testing.T, k *matrixToken) {
	ctx := context.Background()
	svc, db := newService(t, k.tok)
	ca := fixture.NewCA(t, "Matrix CA "+k.name)
	keys := []policy.KeyRequest{
		{KeyType: "ECC", KeyLength: 256}, {KeyType: "ECC", KeyLength: 384}, {KeyType: "ECC", KeyLength: 521},
		{KeyType: "RSA", KeyLength: 2048}, {KeyType: "RSA", KeyLength: 4096},
		{KeyType: "ED25519"}, {KeyType: "ED448"},
	}
	var made []*lifecycle.GenerateResult
	for _, key := range keys {
		name := key.KeyType
		if key.KeyLength != 0 {
			name += "-" + strconv.Itoa(key.KeyLength)
		}
		if testing.Short() && name == "RSA-4096" {
			continue
		}
		before, _ := k.tok.CountObjects(ctx)
		res, err := svc.Generate(ctx, lifecycle.GenerateRequest{Subject: "CN=" + k.name + "-" + name + ".example.com", Key: key,
			SANs: map[string][]string{"dns": {k.name + ".example.com"}}})
		if k.refusals[name] {
			if !errors.Is(err, lifecycle.ErrNotSupported) {
				t.Errorf("%s: %v, want ErrNotSupported", name, err)
			} else {
				t.Logf("%s refused: %v", name, err)
			}
			if after, _ := k.tok.CountObjects(ctx); after != before {
				t.Errorf("%s: a refused Generate changed the token: %d -> %d objects", name, before, after)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		checkCSR(t, name, res.CSRPEM)
		made = append(made, res)
	}
	checkHybrid(t, k, svc)
	pend, n, err := svc.ListPending(ctx, store.PendingQuery{Limit: 100})
	if err != nil || n != len(made) || len(pend) != len(made) {
		t.Fatalf("pending list: %d of %d (%v), want %d", len(pend), n, err, len(made))
	}
	if got, err := svc.GetPending(ctx, made[0].ID, nil); err != nil || got != made[0].CSRPEM {
		t.Errorf("GetPending: %v", err)
	}

	// Marriage of the first, deletion of the second.
	nb, na := valid()
	imp, err := svc.Import(ctx, lifecycle.ImportRequest{Certificate: fixture.PEM(ca.IssueCSR(t, made[0].CSRPEM, nb, na))})
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	rec, _ := db.Get(ctx, imp.ID)
	if cs, err := k.tok.ObjectsOf(ctx, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}); err != nil || len(cs) != 3 {
		t.Errorf("married key's objects %v (%v), want key pair and certificate", cs, err)
	}
	if err := svc.Delete(ctx, made[1].ID, nil, nil); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	gone, _ := db.Get(ctx, made[1].ID)
	if cs, err := k.tok.ObjectsOf(ctx, hsm.KeyRef{ID: gone.KeyID, Label: gone.KeyLabel}); err != nil || len(cs) != 0 {
		t.Errorf("deleted key's objects %v (%v)", cs, err)
	}

	rep, err := svc.Reconcile(ctx, lifecycle.ReconcileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Interrupted != 0 || len(rep.Lost) != 0 || len(rep.Orphans) != 0 || rep.Records != len(made)-1 {
		t.Errorf("reconcile: %+v, want %d records and nothing to do", rep, len(made)-1)
	}
	// Leave the token as found: the crash test reconciles it whole.
	for _, r := range made[1:] {
		_ = svc.Delete(ctx, r.ID, nil, nil)
	}
	if err := k.tok.DestroyKey(ctx, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}); err != nil {
		t.Error(err)
	}
}

// checkHybrid: a hybrid request gets a sealed ML-DSA alternative key
// where the token can seal, and a 400 before anything is created where
// it cannot.
func checkHybrid(t *testing.T, k *matrixToken, svc *lifecycle.Service) {
	ctx := context.Background()
	before, _ := k.tok.CountObjects(ctx)
	res, err := svc.Generate(ctx, lifecycle.GenerateRequest{Subject: "CN=hybrid-" + k.name,
		Key: policy.KeyRequest{KeyType: "ECC", KeyLength: 256, AlternativeKeyType: "ML-DSA-65"}})
	if !k.hybrid {
		if !errors.Is(err, lifecycle.ErrNotSupported) {
			t.Errorf("hybrid: %v, want ErrNotSupported", err)
		}
		if after, _ := k.tok.CountObjects(ctx); after != before {
			t.Errorf("a refused hybrid Generate changed the token: %d -> %d objects", before, after)
		}
		return
	}
	if err != nil {
		t.Fatalf("hybrid: %v", err)
	}
	if err := svc.Delete(ctx, res.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
}

// checkCSR parses a CSR and verifies its signature, which the token made.
func checkCSR(t *testing.T, name, csrPEM string) {
	t.Helper()
	block, _ := pem.Decode([]byte(csrPEM))
	if block == nil {
		t.Fatalf("%s: CSR is not PEM", name)
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err == nil && name != "ED448" { // crypto/x509 has no Ed448; csr verified it
		err = req.CheckSignature()
	}
	if err != nil {
		t.Errorf("%s: CSR: %v", name, err)
	}
}

// TestCrashOnEveryToken kills a process that holds the token (SIGKILL)
// right after its key was born, and right after its record completed,
// on every token of the matrix; reconciliation then leaves no key without
// a record and no record without its key.
func TestCrashOnEveryToken(t *testing.T) {
	for _, k := range matrix(t) {
		t.Run(k.name, func(t *testing.T) {
			for _, tc := range []struct {
				step      string
				wantState store.State
				destroyed int
			}{
				{"key-generated", store.StateFailed, 1},
				{"completed", store.StatePending, 0},
			} {
				t.Run(tc.step, func(t *testing.T) {
					ctx := context.Background()
					dbPath := filepath.Join(t.TempDir(), "csrd.db")
					before, _ := k.tok.CountObjects(ctx)
					runCrashChildOn(t, k, tc.step, dbPath)
					k.restart(t)
					db := openStore(t, dbPath)
					svc := lifecycle.New(lifecycle.HSMToken{Token: k.tok}, db, policy.Default(), testLog)
					rep, err := svc.Reconcile(ctx, lifecycle.ReconcileOptions{})
					if err != nil {
						t.Fatal(err)
					}
					if rep.KeysDestroyed != tc.destroyed || len(rep.Orphans) != 0 || len(rep.Lost) != 0 {
						t.Errorf("reconcile after a crash at %s: %+v", tc.step, rep)
					}
					recs, _ := db.ListByState(ctx, tc.wantState)
					if len(recs) != 1 {
						t.Fatalf("%d %s records after reconcile, want 1", len(recs), tc.wantState)
					}
					ref := hsm.KeyRef{ID: recs[0].KeyID, Label: recs[0].KeyLabel}
					cs, err := k.tok.ObjectsOf(ctx, ref)
					if err != nil || (tc.wantState == store.StatePending) != (len(cs) == 2) {
						t.Errorf("after reconcile the token holds %v of record %d (%s; %v)", cs, recs[0].ID, tc.wantState, err)
					}
					if tc.wantState == store.StatePending {
						if err := svc.Delete(ctx, recs[0].ID, nil, nil); err != nil {
							t.Fatal(err)
						}
					}
					if after, _ := k.tok.CountObjects(ctx); after != before {
						t.Errorf("token objects %d before, %d after", before, after)
					}
				})
			}
		})
	}
}

// restart closes k's token and opens it again, as csrd does when it starts
// after a crash. It matters on tpm2-pkcs11, whose module reads the token's
// objects once, when it is initialised: objects another process made since
// are not visible until then.
func (k *matrixToken) restart(t *testing.T) {
	t.Helper()
	k.tok.Close()
	tok, err := openToken(k.module, k.label, k.pin)
	if err != nil {
		t.Fatal(err)
	}
	k.tok = tok
}

// runCrashChildOn is runCrashChild on matrix token k (the child inherits
// the environment that reaches it: SOFTHSM2_CONF, P11_KIT_SERVER_ADDRESS,
// the TPM's bus and store).
func runCrashChildOn(t *testing.T, k *matrixToken, step, dbPath string) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(),
		envCrashStep+"="+step, envCrashDB+"="+dbPath,
		envTokenLabel+"="+k.label, envPINFile+"="+k.pinFile, envModule+"="+k.module)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL at %s: %v\n%s", step, err, out)
	}
}
