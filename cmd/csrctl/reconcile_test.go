package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/store"
)

// TestReconcileCommand runs `csrctl reconcile` against a real token and
// database changed behind csrd's back: a csrd-labelled key pair with no
// record (made with pkcs11-tool) is listed and kept, then destroyed with
// -destroy; a pending record whose key never existed in the token is
// marked lost, and so is one whose public key alone is gone, its private key
// listed as an orphan.
func TestReconcileCommand(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	tok, err := fixture.Setup(filepath.Join(dir, "softhsm"), "csrctl-test")
	if err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dir, "csrd.db")
	db, err := store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	id, err := db.BeginKey(ctx, &store.KeyRecord{KeyID: []byte{0xaa, 0xbb}, KeyType: "ECC", Curve: "P-256"},
		"csrd-")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("spki"))
	if err := db.CompleteKey(ctx, id, "-----BEGIN CERTIFICATE REQUEST-----\n", sum[:], nil); err != nil {
		t.Fatal(err)
	}
	halfID, err := db.BeginKey(ctx, &store.KeyRecord{KeyID: []byte{0xcc, 0xdd}, KeyType: "ECC", Curve: "P-256"},
		"csrd-")
	if err != nil {
		t.Fatal(err)
	}
	sum = sha256.Sum256([]byte("spki-half"))
	if err := db.CompleteKey(ctx, halfID, "-----BEGIN CERTIFICATE REQUEST-----\n", sum[:], nil); err != nil {
		t.Fatal(err)
	}
	db.Close()

	p11 := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("pkcs11-tool", append([]string{"--module", tok.Module, "--token-label", tok.Label,
			"--login", "--pin", tok.PIN}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("pkcs11-tool %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	p11("--keypairgen", "--key-type", "EC:prime256v1", "--label", "csrd-77", "--id", "0102")
	halfLabel := fmt.Sprintf("csrd-%d", halfID)
	p11("--keypairgen", "--key-type", "EC:prime256v1", "--label", halfLabel, "--id", "ccdd")
	p11("--delete-object", "--type", "pubkey", "--label", halfLabel, "--id", "ccdd")

	cfg := filepath.Join(dir, "csrd.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("hsm:\n  module: %s\n  token_label: %s\n  pin_file: %s\ndatabase: %s\n",
		tok.Module, tok.Label, tok.PINFile, dbPath)), 0o600); err != nil {
		t.Fatal(err)
	}
	reconcile := func(extra ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(append([]string{"reconcile", "-config", cfg, "-min-age", "1ns"}, extra...), &out, &errOut); code != 0 {
			t.Fatalf("csrctl reconcile %v: exit %d\n%s%s", extra, code, out.String(), errOut.String())
		}
		return out.String()
	}

	out := reconcile()
	for _, want := range []string{
		fmt.Sprintf("lost: record %d (csrd-%d, was pending): the private and public keys are gone from the token; marked lost", id, id),
		fmt.Sprintf("lost: record %d (%s, was pending): the public key is gone from the token; marked lost", halfID, halfLabel),
		`orphan: label="csrd-77" id=0102 objects=public-key,private-key: no record 77 exists; kept`,
		fmt.Sprintf(`orphan: label=%q id=ccdd objects=private-key: record %d is lost; kept`, halfLabel, halfID),
		"2 orphans listed, none destroyed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(p11("--list-objects"), "csrd-77") {
		t.Fatal("reconcile without -destroy removed the orphan")
	}
	out = reconcile("-destroy")
	if !strings.Contains(out, `label="csrd-77"`) || !strings.Contains(out, "destroyed") {
		t.Errorf("-destroy output:\n%s", out)
	}
	if objs := p11("--list-objects"); strings.Contains(objs, "csrd-77") || strings.Contains(objs, halfLabel) {
		t.Errorf("an orphan survived -destroy:\n%s", objs)
	}
	if out = reconcile(); !strings.Contains(out, "token and database agree") {
		t.Errorf("third run:\n%s", out)
	}

	db, err = store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, id := range []int64{id, halfID} {
		if rec, _ := db.Get(ctx, id); rec.State != store.StateLost {
			t.Errorf("record %d is %s, want lost", id, rec.State)
		}
	}
	// -destroy's two orphans are on the audit chain, by the operator, one
	// request id for the run.
	rows, err := db.ListAudit(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	destroyed := map[string]*store.AuditEntry{}
	for _, r := range rows {
		if r.Operation == lifecycle.AuditReconcileDestroy {
			destroyed[r.KeyLabel] = r
		}
	}
	a, b := destroyed["csrd-77"], destroyed[halfLabel]
	switch {
	case len(destroyed) != 2 || a == nil || b == nil:
		t.Fatalf("reconcile_destroy rows %v, want csrd-77 and %s", destroyed, halfLabel)
	case a.RecordID != 77 || b.RecordID != halfID:
		t.Errorf("rows name records %d and %d, want 77 and %d", a.RecordID, b.RecordID, halfID)
	}
	for _, r := range []*store.AuditEntry{a, b} {
		if !strings.HasPrefix(r.Actor, "local:") || r.AuthMethod != "local" || r.Source != "csrctl" ||
			r.Result != store.AuditOK || r.RequestID != a.RequestID || !strings.HasPrefix(r.RequestID, "csrctl-") {
			t.Errorf("row %+v: want ok by local:<login> via csrctl, one request id", r)
		}
	}

	var out2, errOut bytes.Buffer
	if code := run([]string{"reconcile", "-config", filepath.Join(dir, "nope.yaml")}, &out2, &errOut); code != 1 {
		t.Errorf("missing config: exit %d", code)
	}
	if code := run([]string{"reconcile", "extra"}, &out2, &errOut); code != 2 {
		t.Errorf("extra argument: exit %d", code)
	}
}

// TestReconcileDestroyKeepsTLSKeys runs `csrctl reconcile -destroy` on a
// token holding, besides a true orphan, a key pair labelled csrd-tls (the
// kind of label an operator picks for csrd's TLS key) and the key pair
// tls.key_file names by URI with a label of csrd's own form. Only the
// orphan is destroyed; csrd-tls is reported as not csrd's, the TLS key is
// not reported at all.
func TestReconcileDestroyKeepsTLSKeys(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	tok, err := fixture.Setup(filepath.Join(dir, "softhsm"), "csrctl-tls")
	if err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dir, "csrd.db")
	db, err := store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	p11 := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("pkcs11-tool", append([]string{"--module", tok.Module, "--token-label", tok.Label,
			"--login", "--pin", tok.PIN}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("pkcs11-tool %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	for label, id := range map[string]string{"csrd-77": "0102", "csrd-tls": "0304", "csrd-900": "0506"} {
		p11("--keypairgen", "--key-type", "EC:prime256v1", "--label", label, "--id", id)
	}
	cfg := filepath.Join(dir, "csrd.yaml")
	yaml := fmt.Sprintf("hsm:\n  module: %s\n  token_label: %s\n  pin_file: %s\ndatabase: %s\n"+
		"tls:\n  cert_file: %s\n  key_file: \"pkcs11:token=%s;object=csrd-900;type=private\"\n",
		tok.Module, tok.Label, tok.PINFile, dbPath, filepath.Join(dir, "tls.crt"), tok.Label)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"reconcile", "-config", cfg, "-min-age", "1ns", "-destroy"}, &out, &errOut); code != 0 {
		t.Fatalf("csrctl reconcile -destroy: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{
		`orphan: label="csrd-77" id=0102 objects=public-key,private-key: no record 77 exists; destroyed`,
		`orphan: label="csrd-tls" id=0304 objects=public-key,private-key: label is not one csrd gives its keys; kept: csrd never destroys`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "csrd-900") {
		t.Errorf("the TLS key named by tls.key_file was reported:\n%s", out.String())
	}
	objs := p11("--list-objects")
	if strings.Contains(objs, "csrd-77") {
		t.Errorf("the orphan survived -destroy:\n%s", objs)
	}
	for _, label := range []string{"csrd-tls", "csrd-900"} {
		if strings.Count(objs, "label:      "+label+"\n") != 2 {
			t.Errorf("%s lost objects to -destroy:\n%s", label, objs)
		}
	}
}
