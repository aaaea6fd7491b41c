package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/store"
)

// TestKeyCommands drives generate, pending ls/show/rm and import against a
// real token and database, as an operator would next to a running csrd,
// and checks what they leave in the audit log.
func TestKeyCommands(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	tok, err := fixture.Setup(filepath.Join(dir, "softhsm"), "csrctl-keys")
	if err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dir, "csrd.db")
	db, err := store.Open(ctx, dbPath) // csrd's first start would create it
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	cfg := filepath.Join(dir, "csrd.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("hsm:\n  module: %s\n  token_label: %s\n  pin_file: %s\ndatabase: %s\n",
		tok.Module, tok.Label, tok.PINFile, dbPath)), 0o600); err != nil {
		t.Fatal(err)
	}
	cli := func(want int, args ...string) (string, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		args = append(args[:1:1], append([]string{"-config", cfg}, args[1:]...)...)
		if args[0] == "pending" { // the verb comes before the flags
			args = append([]string{"pending", args[3]}, append([]string{"-config", cfg}, args[4:]...)...)
		}
		if code := run(args, &out, &errOut); code != want {
			t.Fatalf("csrctl %v: exit %d, want %d\n%s%s", args, code, want, out.String(), errOut.String())
		}
		return out.String(), errOut.String()
	}
	recordOf := func(stderr string) string {
		t.Helper()
		m := regexp.MustCompile(`record (\d+), key csrd-(\d+)`).FindStringSubmatch(stderr)
		if m == nil || m[1] != m[2] {
			t.Fatalf("no record in %q", stderr)
		}
		return m[1]
	}

	csrPEM, stderr := cli(0, "generate", "-subject", "CN=cli.example.com,O=Example", "-key-type", "ECC", "-key-length", "256",
		"-san", "dns:cli.example.com", "-san", "ip4:192.0.2.7")
	id := recordOf(stderr)
	blk, _ := pem.Decode([]byte(csrPEM))
	if blk == nil {
		t.Fatalf("generate printed %q", csrPEM)
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil || csr.CheckSignature() != nil || len(csr.DNSNames) != 1 || len(csr.IPAddresses) != 1 {
		t.Fatalf("CSR: %v %+v", err, csr)
	}
	if out, _ := cli(0, "pending", "ls"); !strings.Contains(out, id+" ") || !strings.Contains(out, "cli.example.com") {
		t.Errorf("pending ls:\n%s", out)
	}
	if out, _ := cli(0, "pending", "show", id); out != csrPEM {
		t.Errorf("pending show %s printed another CSR", id)
	}

	// Issue a certificate for the CSR's key with a throw-away CA, import it.
	ca := fixture.NewCA(t, "csrctl test CA")
	tmpl := fixture.ForCSR(csr)
	tmpl.SerialNumber = big.NewInt(0x1b59)
	certFile := filepath.Join(dir, "cert.pem")
	fixture.WritePEM(t, certFile, ca.Issue(t, tmpl, csr.PublicKey))
	chainFile := filepath.Join(dir, "chain.pem")
	fixture.WritePEM(t, chainFile, ca.Cert)
	out, _ := cli(0, "import", "-chain", chainFile, certFile)
	if !strings.Contains(out, "record "+id+" married") || !strings.Contains(out, "key: pkcs11:") {
		t.Errorf("import:\n%s", out)
	}
	if out, _ := cli(0, "import", certFile); !strings.Contains(out, "already married") {
		t.Errorf("second import:\n%s", out)
	}
	cli(1, "pending", "show", id) // married: no longer pending

	// A second key, deleted again.
	_, stderr = cli(0, "generate", "-subject", "CN=gone.example.com", "-key-type", "RSA", "-key-length", "2048", "-san", "dns:gone.example.com")
	gone := recordOf(stderr)
	if out, _ := cli(0, "pending", "rm", gone); !strings.Contains(out, "deleted 1") {
		t.Errorf("pending rm:\n%s", out)
	}
	cli(1, "pending", "show", gone)

	// Refusals: the policy's, and command-line mistakes.
	if _, stderr := cli(1, "generate", "-subject", "CN=weak.example.com", "-key-type", "RSA", "-key-length", "1024"); !strings.Contains(stderr, "1024") {
		t.Errorf("policy refusal: %q", stderr)
	}
	cli(2, "generate", "-key-type", "ECC")
	cli(2, "pending", "show", "x")
	cli(2, "generate", "-subject", "CN=x", "-key-type", "ECC", "-san", "dns")

	// Everything that acted is audited under the local operator.
	db, err = store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.ListAudit(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		if !strings.HasPrefix(r.Actor, "local:") || r.AuthMethod != "local" || r.Source != "csrctl" {
			t.Errorf("row %+v not attributed to the local operator", r)
		}
		got = append(got, fmt.Sprintf("%s:%s", r.Operation, r.Result))
	}
	want := "generate:ok import:ok import:ok generate:ok pending_delete:ok generate:error"
	if strings.Join(got, " ") != want {
		t.Errorf("audit rows %q, want %q", got, want)
	}
	if _, err := db.VerifyAudit(ctx); err != nil {
		t.Errorf("VerifyAudit: %v", err)
	}
}
