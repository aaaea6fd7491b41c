package hsm

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/fixture"
)

// kind is one token of the test matrix: csrd must behave the same on each.
type kind struct {
	name   string
	module string
	tok    *Token // open for the whole test binary, like testTok
	label  string // tok's label
	other  string // a second token of the same module, for Open tests
	pin    string
}

// config returns a Config for label on k's module, with testConfig's limits.
func (k kind) config(label, pin string) Config {
	c := testConfig(label, pin)
	c.Module = k.module
	return c
}

// Labels of the matrix's extra tokens.
const (
	remoteLabel = "csrd-hsm-remote"
	remoteOther = "csrd-hsm-remote-2"
	tpmLabel    = "csrd-hsm-tpm"
	tpmOther    = "csrd-hsm-tpm-2"
)

// matrixState holds the extra tokens, started at first use (a failure
// sticks: every test then reports it) and stopped by TestMain.
var matrixState struct {
	mu    sync.Mutex
	dir   string
	kinds map[string]*kind
	errs  map[string]error
	stops []func()
}

// started returns the extra token name, starting it with start on first use.
func started(name string, start func(dir string) (*kind, error)) (*kind, error) {
	matrixState.mu.Lock()
	defer matrixState.mu.Unlock()
	if k, ok := matrixState.kinds[name]; ok {
		return k, matrixState.errs[name]
	}
	if matrixState.kinds == nil {
		matrixState.kinds, matrixState.errs = map[string]*kind{}, map[string]error{}
	}
	var (
		k   *kind
		err error
	)
	if matrixState.dir == "" {
		matrixState.dir, err = os.MkdirTemp("", "csrd-hsm-matrix-*")
	}
	if err == nil {
		k, err = start(matrixState.dir)
	}
	matrixState.kinds[name], matrixState.errs[name] = k, err
	return k, err
}

// onStop registers f to run when the matrix stops; matrixState.mu is held.
func onStop(f func()) { matrixState.stops = append(matrixState.stops, f) }

// matrix returns the tokens of the matrix: SoftHSM directly, SoftHSM
// through p11-kit remoting and (not under -short: it takes seconds to set
// up) a TPM 2.0 through tpm2-pkcs11. A token that cannot be set up fails
// the test: `make deps` installs everything.
func matrix(t *testing.T) []kind {
	t.Helper()
	ks := []kind{{name: "softhsm", module: testHSM.Module, tok: testTok, label: testLabel, other: otherLabel, pin: testHSM.PIN}}
	r, err := started("p11kit", startRemote)
	if err != nil {
		t.Fatalf("p11-kit token: %v", err)
	}
	ks = append(ks, *r)
	if testing.Short() {
		t.Log("-short: the TPM token is left out of the matrix")
		return ks
	}
	tp, err := started("tpm", startTPM)
	if err != nil {
		t.Fatalf("TPM token: %v", err)
	}
	return append(ks, *tp)
}

// forEachKind runs f as a subtest on every token of the matrix.
func forEachKind(t *testing.T, f func(t *testing.T, k kind)) {
	for _, k := range matrix(t) {
		t.Run(k.name, func(t *testing.T) { f(t, k) })
	}
}

// startRemote exports two SoftHSM tokens of the test config through a
// p11-kit server and opens the first through p11-kit's client module.
func startRemote(dir string) (*kind, error) {
	for _, l := range []string{remoteLabel, remoteOther} {
		if err := testHSM.AddToken(l); err != nil {
			return nil, err
		}
	}
	srv, err := fixture.StartP11Kit(filepath.Join(dir, "p11kit"), testHSM.Module,
		[]string{"SOFTHSM2_CONF=" + testHSM.Conf}, remoteLabel, remoteOther)
	if err != nil {
		return nil, err
	}
	onStop(srv.Stop)
	if err := srv.Setenv(); err != nil {
		return nil, err
	}
	k := &kind{name: "p11kit", module: srv.Module, label: remoteLabel, other: remoteOther, pin: testHSM.PIN}
	if k.tok, err = Open(context.Background(), k.config(remoteLabel, testHSM.PIN), zerolog.Nop()); err != nil {
		return nil, err
	}
	onStop(func() { _ = k.tok.Close() })
	return k, nil
}

// startTPM starts a software TPM with two tpm2-pkcs11 tokens and opens the
// first.
func startTPM(dir string) (*kind, error) {
	tpm, err := fixture.StartTPM(filepath.Join(dir, "tpm"), tpmLabel)
	if err != nil {
		return nil, err
	}
	onStop(tpm.Stop)
	if err := tpm.AddToken(tpmOther); err != nil {
		return nil, err
	}
	if err := tpm.Setenv(); err != nil {
		return nil, err
	}
	k := &kind{name: "tpm", module: tpm.Module, label: tpmLabel, other: tpmOther, pin: tpm.PIN}
	if k.tok, err = Open(context.Background(), k.config(tpmLabel, tpm.PIN), zerolog.Nop()); err != nil {
		return nil, err
	}
	onStop(func() { _ = k.tok.Close() })
	return k, nil
}

// stopMatrix closes the extra tokens and stops their servers, last started
// first.
func stopMatrix() {
	matrixState.mu.Lock()
	defer matrixState.mu.Unlock()
	for i := len(matrixState.stops) - 1; i >= 0; i-- {
		matrixState.stops[i]()
	}
	if matrixState.dir != "" {
		_ = os.RemoveAll(matrixState.dir)
	}
}
