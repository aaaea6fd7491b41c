package e2e

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/csrd/csrd/hsm"
)

// Environment of the object-listing child (see TestMain).
const (
	envListObjects = "CSRD_DAEMONTEST_LIST_OBJECTS" // the label prefix, or "*" for all
	envListModule  = "CSRD_DAEMONTEST_MODULE"
	envListToken   = "CSRD_DAEMONTEST_TOKEN"
	envListPINFile = "CSRD_DAEMONTEST_PIN_FILE"
)

// objects lists the instance's token objects whose label starts with
// prefix, through package hsm. A token in the tests' own SoftHSM config is
// read through the test's view; one in another config (the HSM fault tests
// move its directory) through a child process, since a module reads its
// SOFTHSM2_CONF once per process.
func (in *instance) objects(t testing.TB, prefix string) []hsm.Object {
	t.Helper()
	if in.View != nil {
		objs, err := in.View.ListObjects(context.Background(), prefix)
		if err != nil {
			t.Fatalf("list token objects: %v", err)
		}
		return objs
	}
	return in.freshObjects(t, prefix)
}

// freshObjects lists like objects, but always through a child process:
// a module that has never seen the token, so nothing it reports comes from
// a cache. SoftHSM's file store rewrites an object file by truncating it,
// releasing its lock and only then writing it (see the README's
// Reliability section), so a long-lived reader that happens to read a file
// in that moment can keep a wrong picture of it; a fresh process reads what
// is on disk now. It logs in, which rewrites token.object: it is for
// second opinions, not every check.
func (in *instance) freshObjects(t testing.TB, prefix string) []hsm.Object {
	t.Helper()
	if prefix == "" {
		prefix = "*"
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), in.Env...), "SOFTHSM2_CONF="+in.Tok.Conf, envListObjects+"="+prefix,
		envListModule+"="+in.Tok.Module, envListToken+"="+in.Tok.Label, envListPINFile+"="+in.Tok.PINFile)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("list token objects in %s: %v", in.Tok.Conf, err)
	}
	var objs []hsm.Object
	if err := json.Unmarshal(out, &objs); err != nil {
		t.Fatalf("list token objects: %v: %q", err, out)
	}
	return objs
}

func listObjectsChild(w io.Writer) error {
	pin, err := os.ReadFile(os.Getenv(envListPINFile))
	if err != nil {
		return err
	}
	tok, err := hsm.Open(context.Background(), hsm.Config{
		Module: os.Getenv(envListModule), TokenLabel: os.Getenv(envListToken), PIN: string(pin),
		MaxSessions: 2, PoolWaitTimeout: time.Minute,
	}, testLog)
	if err != nil {
		return err
	}
	defer tok.Close()
	prefix := os.Getenv(envListObjects)
	if prefix == "*" {
		prefix = ""
	}
	objs, err := tok.ListObjects(context.Background(), prefix)
	if err != nil {
		return err
	}
	return json.NewEncoder(w).Encode(objs)
}
