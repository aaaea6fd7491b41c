package bench

import (
	"fmt"
	"path/filepath"

	"github.com/csrd/csrd/fixture"
	softhsmtest "github.com/csrd/csrd/softhsm-test"
)

// cellToken makes the token of the side-by-side cells (Options.Token), with
// the label mainLabel, and returns its module, PIN and PIN file. Its
// environment is set in this process, which the raw loop and the csrd
// subprocesses share.
func cellToken(o Options, sh *softhsmtest.Token) (module, pin, pinFile string, stop func(), err error) {
	switch o.Token {
	case "", "softhsm":
		return sh.Module, sh.PIN, sh.PINFile, func() {}, nil
	case "p11kit":
		srv, err := fixture.StartP11Kit(filepath.Join(o.Dir, "p11kit"), sh.Module, []string{"SOFTHSM2_CONF=" + sh.Conf}, mainLabel)
		if err != nil {
			return "", "", "", nil, err
		}
		if err := srv.Setenv(); err != nil {
			srv.Stop()
			return "", "", "", nil, err
		}
		return srv.Module, sh.PIN, sh.PINFile, srv.Stop, nil
	case "tpm":
		tpm, err := fixture.StartTPM(filepath.Join(o.Dir, "tpm"), mainLabel)
		if err != nil {
			return "", "", "", nil, err
		}
		if err := tpm.Setenv(); err != nil {
			tpm.Stop()
			return "", "", "", nil, err
		}
		return tpm.Module, tpm.PIN, tpm.PINFile, tpm.Stop, nil
	}
	return "", "", "", nil, fmt.Errorf("bench: unknown token %q (softhsm, p11kit, tpm)", o.Token)
}
