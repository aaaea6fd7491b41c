package main

import (
	"context"
	"crypto"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/checkpoint"
	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/store"
)

// audit verify on a path that holds no database fails and creates nothing:
// a mistyped path or a deleted database is not an empty, intact log.
func TestAuditVerifyMissingDatabase(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{filepath.Join(dir, "csrd.db"), filepath.Join(dir, "var", "lib", "csrd", "csrd.db")} {
		code, out, errOut := runCLI(t, "", "audit", "verify", "-database", path)
		if code != 1 || strings.Contains(out, "OK") || !strings.Contains(errOut, path) || !strings.Contains(errOut, "does not exist") {
			t.Errorf("verify %s: exit %d, stdout %q, stderr %q; want exit 1 naming the missing database", path, code, out, errOut)
		}
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("verify created %s", path)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("verify left %d entries in %s", len(entries), dir)
	}
}

// Every command that opens csrd's database opens an existing one only: with
// the configuration naming a missing database each fails (before logging
// in to the token) and leaves nothing behind.
func TestCommandsNeverCreateTheDatabase(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "state", "csrd.db")
	pinFile := filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte("1234"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "csrd.yaml")
	if err := os.WriteFile(cfg, []byte("hsm:\n  module: /nonexistent/libpkcs11.so\n  token_label: none\n  pin_file: "+pinFile+
		"\ndatabase: "+dbPath+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"audit", "verify", "-config", cfg},
		{"reconcile", "-config", cfg},
		{"pending", "ls", "-config", cfg},
		{"pending", "rm", "-config", cfg, "1"},
		{"generate", "-config", cfg, "-subject", "CN=x", "-key-type", "ECC", "-key-length", "256"},
	} {
		code, _, errOut := runCLI(t, "", args...)
		if code != 1 || !strings.Contains(errOut, dbPath) || !strings.Contains(errOut, "does not exist") {
			t.Errorf("%v: exit %d, stderr %q; want exit 1 naming the missing database", args, code, errOut)
		}
	}
	if _, err := os.Stat(filepath.Dir(dbPath)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a command created %s", filepath.Dir(dbPath))
	}
}

// rewriteAudit is the attack of issue 19 in Go, as anyone with the file and
// the (public) row format can run it: drop the append-only triggers, delete
// the rows drop names, renumber the rest, recompute every hash, rewind the
// sequence, and keep only the first keepCheckpoints checkpoints.
func rewriteAudit(t *testing.T, path string, keepCheckpoints int, drop ...int64) {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	type row struct {
		id                                                                  int64
		time, actor, method, source, op, result, label, reqID, detail, prev string
		status                                                              int
		recordID                                                            int64
	}
	rs, err := db.Query(`SELECT id, time, actor, auth_method, source, operation, result, status, COALESCE(record_id, 0),
        COALESCE(key_label, ''), request_id, COALESCE(detail, '') FROM audit ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var rows []row
	for rs.Next() {
		var r row
		if err := rs.Scan(&r.id, &r.time, &r.actor, &r.method, &r.source, &r.op, &r.result, &r.status, &r.recordID, &r.label, &r.reqID, &r.detail); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(drop, r.id) {
			rows = append(rows, r)
		}
	}
	rs.Close()
	for _, q := range []string{"DROP TRIGGER audit_no_update", "DROP TRIGGER audit_no_delete", "DROP TRIGGER audit_checkpoints_no_delete", "DELETE FROM audit"} {
		exec(q)
	}
	exec("DELETE FROM audit_checkpoints WHERE id > ?", keepCheckpoints)
	prev := strings.Repeat("0", 64)
	for i, r := range rows {
		r.id, r.prev = int64(i+1), prev
		h := sha256.New()
		h.Write([]byte("csrd-audit-v1"))
		for _, f := range []string{strconv.FormatInt(r.id, 10), r.time, r.actor, r.method, r.source, r.op, r.result,
			strconv.Itoa(r.status), strconv.FormatInt(r.recordID, 10), r.label, r.reqID, r.detail, r.prev} {
			var n [4]byte
			binary.BigEndian.PutUint32(n[:], uint32(len(f)))
			h.Write(n[:])
			h.Write([]byte(f))
		}
		hash := hex.EncodeToString(h.Sum(nil))
		exec(`INSERT INTO audit (id, time, actor, auth_method, source, operation, result, status, record_id, key_label, request_id, detail, prev_hash, hash)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULLIF(?, 0), NULLIF(?, ''), ?, NULLIF(?, ''), ?, ?)`,
			r.id, r.time, r.actor, r.method, r.source, r.op, r.result, r.status, r.recordID, r.label, r.reqID, r.detail, r.prev, hash)
		prev = hash
	}
	exec("UPDATE sqlite_sequence SET seq = ? WHERE name = 'audit'", len(rows))
}

// TestAuditSignedCheckpoints: the audit key made in a real token signs
// checkpoints; csrctl audit pubkey exports it, and verify with it pinned
// catches every rewrite a writer of the database can make beyond the
// unsigned window — which, before checkpoints, all verified.
func TestAuditSignedCheckpoints(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	tok, err := fixture.Setup(filepath.Join(dir, "softhsm"), "csrctl-audit")
	if err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dir, "csrd.db")
	cfg := filepath.Join(dir, "csrd.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("hsm:\n  module: %s\n  token_label: %s\n  pin_file: %s\ndatabase: %s\n",
		tok.Module, tok.Label, tok.PINFile, dbPath)), 0o600); err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(dir, "audit.pem")
	if code, _, errOut := runCLI(t, "", "audit", "pubkey", "-config", cfg, "-out", pubFile); code != 0 {
		t.Fatalf("audit pubkey: %d %s", code, errOut)
	}
	pemText, err := os.ReadFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := checkpoint.ParsePublicKeys(pemText)
	if err != nil || len(pinned) != 1 {
		t.Fatalf("audit pubkey wrote %q: %v", pemText, err)
	}
	if code, out, _ := runCLI(t, "", "audit", "pubkey", "-config", cfg); code != 0 || out != string(pemText) {
		t.Fatalf("a second export differs (the key was made again?): %d %q", code, out)
	}

	// csrd's part: rows, and checkpoints of rows 5 and 8 signed in the token.
	db, err := store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	hsmTok, err := hsm.Open(ctx, hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, MaxSessions: 2, PoolWaitTimeout: time.Minute}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	cp := checkpoint.New(zerolog.Nop(), db, func(ctx context.Context) (crypto.Signer, error) { return hsmTok.AuditKey(ctx) }, checkpoint.Options{Node: "node-a"})
	for _, n := range []int{5, 3, 2} {
		for i := range n {
			if err := db.AppendAudit(ctx, &store.AuditEntry{Actor: "alice", Source: "::1", Operation: "pending_delete", Result: store.AuditOK,
				Status: 204, RecordID: int64(i + 1), RequestID: "r"}); err != nil {
				t.Fatal(err)
			}
		}
		if id, _, _ := db.AuditHead(ctx); id < 10 {
			if _, err := cp.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	hsmTok.Close()
	db.Close()

	verify := func(path string, args ...string) (int, string) {
		t.Helper()
		code, out, errOut := runCLI(t, "", append([]string{"audit", "verify", "-database", path}, args...)...)
		return code, out + errOut
	}
	code, out := verify(dbPath, "-pubkey", pubFile, "-max-age", "1h")
	for _, want := range []string{"signed: rows 1 to 8, by 2 checkpoint(s)", `node "node-a"`, "unsigned: rows 9 to 10 (2)", "audit log OK: 10 rows"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("verify intact: exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
	if code, out := verify(dbPath); code != 0 || !strings.Contains(out, "could have replaced") {
		t.Errorf("verify without -pubkey: %d\n%s", code, out)
	}
	if code, out := verify(dbPath, "-pubkey", pubFile, "-max-age", "1ns"); code != 1 || !strings.Contains(out, "STALE") {
		t.Errorf("verify -max-age 1ns: %d\n%s", code, out)
	}

	attacks := []struct {
		name            string
		keepCheckpoints int
		drop            []int64
		want            string
	}{
		{"delete a row, recompute every hash", 99, []int64{3}, "TAMPERED: checkpoint 1"},
		{"recompute every hash", 99, nil, ""}, // nothing changed: still intact
		{"cut the tail beyond the window, rewind the sequence", 99, []int64{7, 8, 9, 10}, "TAMPERED: checkpoint 2"},
		{"delete a row and every checkpoint", 0, []int64{3}, "UNPROVEN"},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "copy.db")
			copyFile(t, dbPath, path)
			rewriteAudit(t, path, a.keepCheckpoints, a.drop...)
			code, out := verify(path, "-pubkey", pubFile)
			if a.want == "" {
				if code != 0 {
					t.Fatalf("exit %d:\n%s", code, out)
				}
				return
			}
			if code != 1 || !strings.Contains(out, a.want) {
				t.Fatalf("exit %d, want 1 and %q:\n%s", code, a.want, out)
			}
			t.Log(strings.TrimSpace(out))
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// pending rm and import, like the API, commit their audit row with the
// decision: when the row cannot be written (a trigger that RAISEs) they fail
// and the key, its record and the token stay as they were.
func TestKeyCommandsFailClosedWithoutAudit(t *testing.T) {
	ctx := context.Background()
	_, tok, dbPath, cfg := newTokenEnv(t, "csrctl-failclosed")
	code, _, errOut := runCLI(t, "", "generate", "-config", cfg, "-subject", "CN=keep.example", "-key-type", "ECC", "-key-length", "256")
	if code != 0 {
		t.Fatalf("generate: %d %s", code, errOut)
	}
	if err := sqlite(dbPath, `CREATE TRIGGER audit_fault BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END`); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCLI(t, "", "pending", "rm", "-config", cfg, "1"); code != 1 {
		t.Errorf("pending rm with the audit row failing: exit %d\n%s%s", code, out, errOut)
	}
	db, err := store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := db.Get(ctx, 1)
	db.Close()
	if err != nil || rec.State != store.StatePending || rec.Intent != store.IntentNone {
		t.Fatalf("record 1 after the refused rm: %v %q, %v", rec.State, rec.Intent, err)
	}
	hsmTok, err := hsm.Open(ctx, hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, MaxSessions: 2, PoolWaitTimeout: time.Minute}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer hsmTok.Close()
	if classes, err := hsmTok.ObjectsOf(ctx, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}); err != nil || len(classes) != 2 {
		t.Errorf("token objects of record 1 after the refused rm: %v, %v", classes, err)
	}
}
