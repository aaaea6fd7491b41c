package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/auth"
	"github.com/csrd/csrd/store"
)

func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	var code int
	if args[0] == "user" && len(args) > 1 && args[1] == "add" {
		// Cheap hashes keep the test quick; the real command refuses them
		// (TestUserAddRefusesCheapHashes).
		ua := userAdd{stdin: strings.NewReader(stdin), floor: testArgon}
		if err := ua.run(flag.NewFlagSet("user add", flag.ContinueOnError), args[2:], &out, &errOut); err != nil {
			code = 1
			if errors.Is(err, errUsage) {
				code = 2
			}
			errOut.WriteString(err.Error())
		}
	} else {
		code = run(args, &out, &errOut)
	}
	return code, out.String(), errOut.String()
}

var (
	testArgon  = auth.Argon2Params{Memory: 64, Time: 1, Threads: 1}
	cheapArgon = []string{"-argon2-memory", "64", "-argon2-time", "1"}
)

func TestUserAddAndTokenCreate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.yaml")
	cfg := filepath.Join(dir, "csrd.yaml")
	dbPath := filepath.Join(dir, "csrd.db")
	if err := os.WriteFile(cfg, []byte("database: "+dbPath+"\nauth:\n  file: "+path+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	// Generated password, printed once on stdout; the file comes from -config.
	code, out, errOut := runCLI(t, "", append([]string{"user", "add", "-config", cfg, "-op", "generate,pending_read", "-pattern", "1,2"}, append(cheapArgon, `CORP\enroll`)...)...)
	if code != 0 {
		t.Fatalf("user add: %d %s", code, errOut)
	}
	password := strings.TrimSpace(out)
	if len(password) < 20 || strings.Contains(errOut, password) {
		t.Fatalf("password %q printed wrongly (stderr %q)", password, errOut)
	}
	// Password from stdin.
	if code, _, errOut := runCLI(t, "a long enough password\n", append([]string{"user", "add", "-auth-file", path, "-op", "admin", "-password-stdin"}, append(cheapArgon, "ops")...)...); code != 0 {
		t.Fatalf("user add -password-stdin: %d %s", code, errOut)
	}
	if code, _, _ := runCLI(t, "short\n", append([]string{"user", "add", "-auth-file", path, "-op", "admin", "-password-stdin"}, append(cheapArgon, "ops2")...)...); code != 1 {
		t.Errorf("short password accepted")
	}
	// The same name again is refused without -replace.
	if code, _, errOut := runCLI(t, "", append([]string{"user", "add", "-auth-file", path, "-op", "generate"}, append(cheapArgon, `corp\ENROLL`)...)...); code != 1 || !strings.Contains(errOut, "-replace") {
		t.Errorf("duplicate user: %d %s", code, errOut)
	}
	code, tok, errOut := runCLI(t, "", "token", "create", "-config", cfg, "-op", "generate", "-template", "WebServer", "-expires", "30d", "ci-runner")
	if code != 0 {
		t.Fatalf("token create: %d %s", code, errOut)
	}
	tok = strings.TrimSpace(tok)
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), password) || strings.Contains(string(raw), tok) {
		t.Fatal("the auth file holds a password or token in clear")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("auth file mode %04o", st.Mode().Perm())
	}

	// Changes made with -config are audited (the -auth-file ones cannot
	// know the database).
	if db, err = store.Open(ctx, dbPath); err != nil {
		t.Fatal(err)
	}
	rows, err := db.ListAudit(ctx, 0, 10)
	db.Close()
	if err != nil || len(rows) != 2 || rows[0].Operation != "user_add" || !strings.Contains(rows[0].Detail, `CORP\enroll`) ||
		rows[1].Operation != "token_create" || !strings.Contains(rows[1].Detail, "ci-runner") || strings.Contains(rows[1].Detail, tok) {
		t.Errorf("audit rows %+v, %v", rows, err)
	}

	a, err := auth.Open(path, zerolog.Nop(), auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := a.Basic(ctx, "192.0.2.1", `CORP\enroll`, password)
	if err != nil || !id.Grants.Allows(auth.OpPendingRead) || id.Grants.Allows(auth.OpPendingDelete) || !id.Grants.AllowsTarget(2, "") || id.Grants.AllowsTarget(3, "") {
		t.Errorf("user: %+v %v", id, err)
	}
	if _, err := a.Basic(ctx, "192.0.2.1", "ops", "a long enough password"); err != nil {
		t.Errorf("stdin user: %v", err)
	}
	tid, err := a.Bearer(ctx, "192.0.2.1", tok)
	if err != nil || tid.Name != "ci-runner" || !tid.Grants.AllowsTarget(0, "webserver") {
		t.Errorf("token: %+v %v", tid, err)
	}

	for _, bad := range [][]string{
		{"user", "add", "-auth-file", path, "x"},                // no -op
		{"user", "add", "-auth-file", path, "-op", "root", "x"}, // unknown op
		{"user", "add", "-auth-file", path, "-op", "generate"},  // no name
		{"token", "create", "-auth-file", path, "-op", "generate", "-expires", "soon", "t"},
		{"token", "list"},
	} {
		if code, _, _ := runCLI(t, "", bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
}

func TestAuditVerify(t *testing.T) {
	ctx := context.Background()
	dbPath := filepath.Join(t.TempDir(), "csrd.db")
	db, err := store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := db.AppendAudit(ctx, &store.AuditEntry{Actor: "a", Source: "::1", Operation: "generate", Result: store.AuditOK, Status: 200, RequestID: string(rune('a' + i))}); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	code, out, errOut := runCLI(t, "", "audit", "verify", "-database", dbPath)
	if code != 0 || !strings.Contains(out, "audit log OK: 3 rows") {
		t.Fatalf("verify intact: %d %q %q", code, out, errOut)
	}
	head := out[strings.LastIndex(out, "head ")+5 : len(out)-1]
	if code, out, _ := runCLI(t, "", "audit", "verify", "-database", dbPath, "-head", head); code != 0 || !strings.Contains(out, "is row 3") {
		t.Fatalf("verify -head: %d %q", code, out)
	}
	// Cut the tail and rewind the sequence: the chain alone cannot tell,
	// the recorded head can.
	for _, q := range []string{"DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE id = 3", "UPDATE sqlite_sequence SET seq = 2 WHERE name = 'audit'"} {
		if err := sqlite(dbPath, q); err != nil {
			t.Fatal(err)
		}
	}
	if code, out, _ := runCLI(t, "", "audit", "verify", "-database", dbPath); code != 0 {
		t.Fatalf("verify after a clean cut: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, "", "audit", "verify", "-database", dbPath, "-head", head); code != 1 || !strings.Contains(out, "no longer in the log") {
		t.Fatalf("verify -head after a cut: %d %q", code, out)
	}
	// Tamper through the sqlite3 CLI, as an intruder with the file would.
	for _, q := range []string{"DELETE FROM audit WHERE id = 2"} {
		if err := sqlite(dbPath, q); err != nil {
			t.Fatal(err)
		}
	}
	code, out, _ = runCLI(t, "", "audit", "verify", "-database", dbPath)
	if code != 1 || !strings.Contains(out, "TAMPERED: row 2") {
		t.Fatalf("verify tampered: %d %q", code, out)
	}
}

// csrctl user add never writes a hash cheaper than csrd's default (csrd
// warns about such users): lower argon2 costs are a command-line error and
// nothing is written. Through run, with the floor the command really uses.
func TestUserAddRefusesCheapHashes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.yaml")
	for _, flags := range [][]string{{"-argon2-memory", "65535"}, {"-argon2-time", "2"}, cheapArgon} {
		var out, errOut bytes.Buffer
		args := append(append([]string{"user", "add", "-auth-file", path, "-op", "generate"}, flags...), "weak")
		if code := run(args, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "default") {
			t.Errorf("%v: exit %d %q, want 2 naming the default", flags, code, errOut.String())
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%v: the auth file was written (%v)", flags, err)
		}
	}
}
