package e2e

import (
	"context"
	"encoding/json"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/store"
	"github.com/csrd/csrd/tools/loadgen"
)

// matrixToken is a token of the matrix beyond SoftHSM directly, started
// for one test and stopped by it.
type matrixToken struct {
	name  string
	start func(t *testing.T, dir, label string) (*fixture.Token, []string)
	// offers are the kinds csrd makes there; refuses are Generate bodies
	// it answers 400 before creating anything.
	offers  []string
	refuses []string
	// keyInfo is what the default policy's Policies.KeyInfo advertises
	// there: the bit lengths of each algorithm the token can make.
	keyInfo map[string][]int
}

var matrixTokens = []matrixToken{
	{"p11kit", startP11KitToken, []string{"p256", "p384", "p521", "rsa2048"},
		[]string{`{"Subject":"CN=ed.example.com","KeyType":"Ed25519"}`},
		map[string][]int{"RSA": {2048, 3072, 4096, 8192}, "ECDSA": {256, 384, 521}}},
	{"tpm", startTPMToken, []string{"p256", "p384", "rsa2048"},
		[]string{`{"Subject":"CN=ed.example.com","KeyType":"Ed25519"}`, `{"Subject":"CN=rsa.example.com","KeyType":"RSA","KeyLength":4096}`},
		map[string][]int{"RSA": {2048, 3072}, "ECDSA": {256, 384}}},
}

// startP11KitToken makes a SoftHSM token in the tests' store and exports it
// with a p11-kit server: csrd loads p11-kit-client.so.
func startP11KitToken(t *testing.T, dir, label string) (*fixture.Token, []string) {
	tok, _ := newToken(t, label)
	srv, err := fixture.StartP11Kit(dir, tok.Module, []string{"SOFTHSM2_CONF=" + tok.Conf}, label)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return &fixture.Token{Module: srv.Module, Label: label, PIN: tok.PIN, PINFile: tok.PINFile}, srv.Env
}

// startTPMToken starts swtpm, tpm2-abrmd on a private bus and a
// tpm2-pkcs11 token.
func startTPMToken(t *testing.T, dir, label string) (*fixture.Token, []string) {
	tpm, err := fixture.StartTPM(dir, label)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tpm.Stop)
	return &fixture.Token{Module: tpm.Module, Label: label, PIN: tpm.PIN, PINFile: tpm.PINFile}, tpm.Env
}

// TestTokenMatrixDaemon runs the csrd binary on the tokens of the matrix
// that are not SoftHSM directly (the other end-to-end tests run on that):
// every key type it offers there is generated; what the token cannot do is
// a 400 with nothing created; a pending key is married and another
// deleted; csrd is killed with SIGKILL while generating, and after the
// restart every answered promise holds and no csrd object is left that no
// record owns.
func TestTokenMatrixDaemon(t *testing.T) {
	fullRunOnly(t, "csrd on SoftHSM through p11-kit remoting and on a TPM 2.0 token, kill -9 included")
	for _, mt := range matrixTokens {
		t.Run(mt.name, func(t *testing.T) {
			tok, env := mt.start(t, t.TempDir(), "e2e-matrix-"+mt.name)
			in := newInstanceWith(t, instanceOptions{Tok: tok, Env: env})
			d := in.start(t)
			defer func() { d.kill() }()
			client := &loadgen.Client{HTTP: &http.Client{Timeout: 2 * time.Minute}, Base: d.Base}
			led := newLedger()
			matrixFlow(t, client, led, mt)
			killWhileGenerating(t, client, led, d)
			d = in.start(t)
			cen := checkInvariants(t, in, led)
			t.Logf("after SIGKILL and restart: records %v, %d csrd objects", cen.Records, cen.Objects)
			if err := d.stop(20 * time.Second); err != nil {
				t.Errorf("clean stop: %v", err)
			}
			d.checkNoRace(t)
		})
	}
}

// matrixFlow checks what csrd advertises there, generates each kind the
// token offers, checks the refusals, marries the first key and deletes
// the second.
func matrixFlow(t *testing.T, client *loadgen.Client, led *ledger, mt matrixToken) {
	t.Helper()
	ctx := context.Background()
	checkKeyInfo(t, client, mt)
	for i, kind := range mt.offers {
		m, err := loadgen.ParseMix(kind)
		if err != nil {
			t.Fatal(err)
		}
		a := client.Generate(ctx, m.Body(rand.New(rand.NewPCG(uint64(i), 0)), int64(i)))
		if a.Failure() != nil {
			t.Fatalf("%s: %v", kind, a.Failure())
		}
		led.ack(t, a.ID, a.CSR)
	}
	for _, body := range mt.refuses {
		a := client.Generate(ctx, []byte(body))
		if a.Status != http.StatusBadRequest || a.ErrorCode != api.CodeNotSupported {
			t.Errorf("%s: %d %s %q, want 400 %s", body, a.Status, a.ErrorCode, a.Message, api.CodeNotSupported)
		}
	}
	ca := fixture.NewCA(t, "Matrix CA "+mt.name)
	r := rand.New(rand.NewPCG(1, 1))
	married, cr, _ := led.claim(r)
	if a := client.Import(ctx, issuePEM(t, ca, cr)); a.Failure() != nil || a.ID != married {
		t.Fatalf("import for record %d: id %d, %v", married, a.ID, a.Failure())
	}
	led.settle(married, store.StateMarried)
	deleted, _, _ := led.claim(r)
	if a := client.Delete(ctx, deleted); a.Failure() != nil {
		t.Fatalf("delete record %d: %v", deleted, a.Failure())
	}
	led.settle(deleted, store.StateDeleted)
}

// killWhileGenerating runs two closed loops of P-256 Generates and kills
// csrd with SIGKILL once a few have been answered.
func killWhileGenerating(t *testing.T, client *loadgen.Client, led *ledger, d *daemon) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, _ := loadgen.ParseMix("p256")
	var (
		wg       sync.WaitGroup
		answered = make(chan struct{}, 64)
	)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 2))
			for n := int64(100 * (w + 1)); ctx.Err() == nil; n++ {
				a := client.Generate(ctx, m.Body(r, n))
				if a.Status != http.StatusOK {
					return // the kill cut it off
				}
				led.ack(t, a.ID, a.CSR)
				select {
				case answered <- struct{}{}:
				default:
				}
			}
		}()
	}
	for range 3 {
		select {
		case <-answered:
		case <-time.After(time.Minute):
			t.Fatal("no Generate answered within a minute")
		}
	}
	d.kill()
	cancel()
	wg.Wait()
}

// checkKeyInfo: EnrollmentPatterns/Settings and every pattern advertise in
// Policies.KeyInfo exactly the algorithms and sizes the token can make
// (the default policy allows RSA 2048-8192, ECC P-256/384/521, Ed25519
// and Ed448).
func checkKeyInfo(t *testing.T, client *loadgen.Client, mt matrixToken) {
	t.Helper()
	var st api.PatternSettingsResponse
	getInto(t, client, "/EnrollmentPatterns/Settings", &st)
	var patterns []api.EnrollmentPatternResponse
	getInto(t, client, "/EnrollmentPatterns", &patterns)
	all := []api.PatternPoliciesResponse{st.Policies}
	for _, p := range patterns {
		all = append(all, p.Policies)
	}
	for i, pol := range all {
		got := map[string][]int{}
		for name, ki := range pol.KeyInfo {
			got[name] = ki.BitLengths
		}
		if !maps.EqualFunc(got, mt.keyInfo, slices.Equal) {
			t.Errorf("%s: Policies.KeyInfo #%d = %v, want %v (what the token makes)", mt.name, i, got, mt.keyInfo)
		}
	}
}

// getInto GETs path under the API's base and decodes the 200 answer.
func getInto(t *testing.T, client *loadgen.Client, path string, v any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, client.Base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
	resp, err := client.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d, %v", path, resp.StatusCode, err)
	}
}
