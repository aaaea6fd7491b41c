package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/enroll"
	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

// TestKeyRetireAndRenew: an operator retires a married (imported) key:
// destroyed in the token, the record retired, the audit row first. renew
// refuses a certificate csrd did not enroll, and both refuse bad ids.
func TestKeyRetireAndRenew(t *testing.T) {
	ctx := context.Background()
	dir, _, dbPath, cfg := newTokenEnv(t, "csrctl-retire")
	cli := func(want int, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != want {
			t.Fatalf("csrctl %v: exit %d, want %d\n%s%s", args, code, want, out.String(), errOut.String())
		}
		return out.String() + errOut.String()
	}
	out := cli(0, "generate", "-config", cfg, "-subject", "CN=retire.example.com", "-key-type", "ECC", "-key-length", "256")
	id := regexp.MustCompile(`record (\d+)`).FindStringSubmatch(out)[1]
	blk, _ := pem.Decode([]byte(out))
	csr, _ := x509.ParseCertificateRequest(blk.Bytes)
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "retire.example.com"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, csr.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	cli(0, "import", "-config", cfg, certFile)

	if out := cli(1, "renew", "-config", cfg, id); !strings.Contains(out, "no certificate enrolled by csrd") {
		t.Errorf("renew of an imported certificate: %s", out)
	}
	if out := cli(0, "key", "retire", "-config", cfg, id); !strings.Contains(out, "record "+id+" retired") {
		t.Errorf("key retire: %s", out)
	}
	if out := cli(0, "key", "retire", "-config", cfg, id); !strings.Contains(out, "retired") {
		t.Errorf("key retire again: %s", out)
	}
	cli(2, "key", "retire", "-config", cfg)
	cli(2, "key", "destroy", id)
	cli(2, "renew", "-config", cfg, "x")

	db, err := store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	if _, err := fmt.Sscan(id, &n); err != nil {
		t.Fatal(err)
	}
	rec, _ := db.Get(ctx, n)
	if rec.State != store.StateRetired || rec.Cert.Serial != "07" {
		t.Errorf("record %s, certificate serial %q", rec.State, rec.Cert.Serial)
	}
	rows, _ := db.ListAudit(ctx, 0, 100)
	var ops []string
	for _, r := range rows {
		ops = append(ops, r.Operation+":"+r.Result)
	}
	if want := "generate:ok import:ok renew:error retire:ok retire:ok"; strings.Join(ops, " ") != want {
		t.Errorf("audit rows %q, want %q", ops, want)
	}
}

// TestRenewCommand: csrctl renew renews, in its own process, a certificate
// csrd enrolled, and runs the CA's deploy hook.
func TestRenewCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Pebble")
	}
	ctx := context.Background()
	dir := t.TempDir()
	tok, err := fixture.Setup(filepath.Join(dir, "softhsm"), "csrctl-renew")
	if err != nil {
		t.Fatal(err)
	}
	p := fixture.StartPebble(t, fixture.PebbleOptions{AlwaysValid: true})
	hook, hookOut := filepath.Join(dir, "hook.sh"), filepath.Join(dir, "hook.out")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\nenv | grep '^CSRD_' > "+hookOut+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dir, "csrd.db")
	cfg := filepath.Join(dir, "csrd.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("hsm:\n  module: %s\n  token_label: %s\n  pin_file: %s\ndatabase: %s\n"+
		"cas:\n  - name: pebble\n    acme: {directory: %q, roots_file: %q}\n    deploy_hook: %s\n",
		tok.Module, tok.Label, tok.PINFile, dbPath, p.Directory, p.RootsFile, hook)), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	// Enrolled as csrd would, through the same code.
	env, err := openKeyEnv(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	gen, err := env.svc.Generate(ctx, lifecycle.GenerateRequest{Subject: "CN=renew.example.test",
		Key: policy.KeyRequest{KeyType: "ECC", KeyLength: 256}, SANs: map[string][]string{"dns": {"renew.example.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	enr, err := env.enrollment(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enr.Enroll(ctx, enroll.Request{CSR: gen.CSRPEM}); err != nil {
		t.Fatal(err)
	}
	env.Close()

	var out, errOut bytes.Buffer
	if code := run([]string{"renew", "-config", cfg, fmt.Sprint(gen.ID)}, &out, &errOut); code != 0 {
		t.Fatalf("csrctl renew: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	m := regexp.MustCompile(`record \d+ renewed by record (\d+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("csrctl renew printed %q", out.String())
	}
	got, _ := os.ReadFile(hookOut)
	if !strings.Contains(string(got), "CSRD_RECORD_ID="+m[1]) || !strings.Contains(string(got), fmt.Sprintf("CSRD_PREVIOUS_RECORD_ID=%d", gen.ID)) {
		t.Errorf("hook environment:\n%s", got)
	}
	if code := run([]string{"renew", "-config", cfg, fmt.Sprint(gen.ID)}, &out, &errOut); code != 1 {
		t.Errorf("renewing a renewed certificate: exit %d", code)
	}
}
