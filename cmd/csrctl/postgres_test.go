package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/store"
)

// TestCommandsOnPostgres runs the key commands against a PostgreSQL
// database, the password in database_password_file: what csrctl does on
// SQLite it does there too, audited on the same chain; backup and restore
// point at PostgreSQL's own tools.
func TestCommandsOnPostgres(t *testing.T) {
	e := newPGEnv(t, "csrctl-pg")
	pg, dir := e.pg, e.dir
	ctx := context.Background()
	db, err := store.Open(ctx, e.dsn, store.WithPassword(pg.Password)) // csrd's first start would create the schema
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	cfg := e.config(t, "csrd.yaml", "")
	cli := func(want int, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != want {
			t.Fatalf("csrctl %v: exit %d, want %d\n%s%s", args, code, want, out.String(), errOut.String())
		}
		if strings.Contains(out.String()+errOut.String(), pg.Password) {
			t.Fatalf("csrctl %v printed the database password", args)
		}
		return out.String() + errOut.String()
	}
	var ids []string
	for _, cn := range []string{"a.example.com", "b.example.com"} {
		out := cli(0, "generate", "-config", cfg, "-subject", "CN="+cn, "-key-type", "ECC", "-key-length", "256")
		m := regexp.MustCompile(`record (\d+), key csrd-`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("generate: %s", out)
		}
		ids = append(ids, m[1])
	}
	if out := cli(0, "pending", "ls", "-config", cfg); !strings.Contains(out, "a.example.com") || !strings.Contains(out, "b.example.com") {
		t.Errorf("pending ls:\n%s", out)
	}
	cli(0, "pending", "rm", "-config", cfg, ids[0])
	if out := cli(0, "reconcile", "-config", cfg, "-min-age", "1ns"); !strings.Contains(out, "token and database agree") {
		t.Errorf("reconcile:\n%s", out)
	}
	if out := cli(0, "audit", "verify", "-config", cfg); !strings.Contains(out, "audit log OK: 3 rows") {
		t.Errorf("audit verify:\n%s", out)
	}
	if out := cli(1, "backup", "-config", cfg, filepath.Join(dir, "b.db")); !strings.Contains(out, "pg_dump") {
		t.Errorf("backup of PostgreSQL:\n%s", out)
	}
}

// TestDBMigrate moves a SQLite appliance's records to PostgreSQL with
// `csrctl db migrate`, then works on them there: the same ids and labels,
// the keys still found in the token, the audit chain continued and
// verifying; a second migration into the now non-empty database is refused.
func TestDBMigrate(t *testing.T) {
	e := newPGEnv(t, "csrctl-migrate")
	dir := e.dir
	dbPath := filepath.Join(dir, "csrd.db")
	db, err := store.Open(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	liteCfg := e.configOn(t, "lite.yaml", dbPath, "")
	pgCfg := e.config(t, "pg.yaml", "")
	cli := func(want int, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != want {
			t.Fatalf("csrctl %v: exit %d, want %d\n%s%s", args, code, want, out.String(), errOut.String())
		}
		return out.String() + errOut.String()
	}
	var ids []string
	for _, cn := range []string{"kept.example.com", "gone.example.com", "later.example.com"} {
		out := cli(0, "generate", "-config", liteCfg, "-subject", "CN="+cn, "-key-type", "ECC", "-key-length", "256")
		ids = append(ids, regexp.MustCompile(`record (\d+), key`).FindStringSubmatch(out)[1])
	}
	cli(0, "pending", "rm", "-config", liteCfg, ids[1])

	out := cli(0, "db", "migrate", "-config", pgCfg, "-from", dbPath)
	for _, want := range []string{"keys: 3 rows", "audit: 4 rows", "audit chain verifies: 4 rows"} {
		if !strings.Contains(out, want) {
			t.Errorf("db migrate output lacks %q:\n%s", want, out)
		}
	}
	out = cli(0, "pending", "ls", "-config", pgCfg)
	if !strings.Contains(out, ids[0]+" ") || !strings.Contains(out, ids[2]+" ") || strings.Contains(out, "gone.example.com") {
		t.Errorf("pending ls on PostgreSQL after the migration:\n%s", out)
	}
	cli(0, "pending", "rm", "-config", pgCfg, ids[2])
	if out := cli(0, "reconcile", "-config", pgCfg, "-min-age", "1ns"); !strings.Contains(out, "token and database agree") {
		t.Errorf("reconcile on PostgreSQL after the migration:\n%s", out)
	}
	if out := cli(0, "audit", "verify", "-config", pgCfg); !strings.Contains(out, "audit log OK: 5 rows") {
		t.Errorf("audit verify:\n%s", out)
	}
	if out := cli(1, "db", "migrate", "-config", pgCfg, "-from", dbPath); !strings.Contains(out, "not empty") {
		t.Errorf("second migration:\n%s", out)
	}
}

// TestReconcileLeaseRule: csrctl reconcile holds no lease of its own. A
// record a live node is generating is that node's to finish, whatever its
// age, and is left alone; once the node's heartbeat is older than
// cluster.node_timeout the record is repaired (failed: its key was never
// made).
func TestReconcileLeaseRule(t *testing.T) {
	e := newPGEnv(t, "csrctl-lease")
	ctx := context.Background()
	node, err := store.Open(ctx, e.dsn, store.WithPassword(e.pg.Password), store.WithNode("n1"))
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if err := node.RegisterNode(ctx, store.Node{Name: "n1", URL: "http://127.0.0.1:1"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	id, err := node.BeginKey(ctx, &store.KeyRecord{KeyID: []byte{0xee}, KeyType: "ECC", Curve: "P-256",
		TokenLabel: e.tok.Label}, "csrd-")
	if err != nil {
		t.Fatal(err)
	}
	reconcile := func(cfg string) store.State {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run([]string{"reconcile", "-config", cfg, "-min-age", "1ns"}, &out, &errOut); code != 0 {
			t.Fatalf("csrctl reconcile: exit %d\n%s%s", code, out.String(), errOut.String())
		}
		rec, err := node.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return rec.State
	}
	if got := reconcile(e.config(t, "live.yaml", "")); got != store.StateGenerating {
		t.Errorf("record leased by a live node after reconcile: %s, want generating (left alone)", got)
	}
	short := e.config(t, "short.yaml", "cluster:\n  heartbeat_interval: 50ms\n  node_timeout: 100ms\n")
	time.Sleep(300 * time.Millisecond) // n1 sends no heartbeat: older than 100ms now
	if got := reconcile(short); got != store.StateFailed {
		t.Errorf("record leased by a dead node after reconcile: %s, want failed (repaired)", got)
	}
}

// pgEnv is what csrctl's commands on PostgreSQL need: a database of its own
// on the shared cluster (its schema not created yet) and a SoftHSM token,
// in t's temp dir.
type pgEnv struct {
	pg  *fixture.Postgres
	dsn string
	dir string
	tok *fixture.Token
}

func newPGEnv(t *testing.T, label string) *pgEnv {
	t.Helper()
	pg := fixture.SharedPostgres(t)
	e := &pgEnv{pg: pg, dsn: pg.CreateDB(t, t.Name()), dir: t.TempDir()}
	var err error
	if e.tok, err = fixture.Setup(filepath.Join(e.dir, "softhsm"), label); err != nil {
		t.Fatal(err)
	}
	return e
}

// config writes the configuration file name for the PostgreSQL database,
// with extra YAML, and returns its path.
func (e *pgEnv) config(t *testing.T, name, extra string) string {
	t.Helper()
	return e.configOn(t, name, e.dsn, "database_password_file: "+e.pg.PasswordFile+"\n"+extra)
}

// configOn is config for another database (a SQLite file).
func (e *pgEnv) configOn(t *testing.T, name, database, extra string) string {
	t.Helper()
	path := filepath.Join(e.dir, name)
	if err := os.WriteFile(path, []byte(fmt.Sprintf("hsm:\n  module: %s\n  token_label: %s\n  pin_file: %s\ndatabase: %s\n%s",
		e.tok.Module, e.tok.Label, e.tok.PINFile, database, extra)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
