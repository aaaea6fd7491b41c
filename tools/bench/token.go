package bench

import (
	"fmt"
	"path/filepath"

	"github.com/csrd/csrd/fixture"
)

// cellTok is the main token of the side-by-side cells: its module, PIN
// and PIN file.
type cellTok struct{ module, pin, pinFile string }

// cellToken makes the token of the side-by-side cells (Options.Token), with
// the label mainLabel. Its environment is set in this process, which the
// raw loop and the csrd subprocesses share; stop stops what it started.
func cellToken(o Options, sh *fixture.Token) (c cellTok, stop func(), err error) {
	switch o.Token {
	case "", "softhsm":
		return cellTok{sh.Module, sh.PIN, sh.PINFile}, func() {}, nil
	case "p11kit":
		srv, err := fixture.StartP11Kit(filepath.Join(o.Dir, "p11kit"), sh.Module, []string{"SOFTHSM2_CONF=" + sh.Conf}, mainLabel)
		if err != nil {
			return cellTok{}, nil, err
		}
		if err := srv.Setenv(); err != nil {
			srv.Stop()
			return cellTok{}, nil, err
		}
		return cellTok{srv.Module, sh.PIN, sh.PINFile}, srv.Stop, nil
	case "tpm":
		tpm, err := fixture.StartTPM(filepath.Join(o.Dir, "tpm"), mainLabel)
		if err != nil {
			return cellTok{}, nil, err
		}
		if err := tpm.Setenv(); err != nil {
			tpm.Stop()
			return cellTok{}, nil, err
		}
		return cellTok{tpm.Module, tpm.PIN, tpm.PINFile}, tpm.Stop, nil
	}
	return cellTok{}, nil, fmt.Errorf("bench: unknown token %q (softhsm, p11kit, tpm)", o.Token)
}
