package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/store"
	"github.com/csrd/csrd/tools/loadgen"
)

// fleetNode is one csrd node of a fleet on one PostgreSQL database, with
// its own token.
type fleetNode struct {
	name   string
	in     *instance
	d      *daemon
	client *loadgen.Client
}

// Heartbeats are fast in these tests, so that a killed node is gone for
// the others within seconds.
const (
	fleetHeartbeat = 300 * time.Millisecond
	fleetTimeout   = 2 * time.Second
)

// newFleetNode writes the config of node name on a new token, on database
// dsn, listening on a fixed loopback port (the other nodes reach it at its
// advertised URL), forwarding with the shared secret in secretFile.
func newFleetNode(t *testing.T, pg *fixture.Postgres, dsn, secretFile, name string, extra ...string) *fleetNode {
	t.Helper()
	return newFleetNodeOn(t, pg, dsn, secretFile, name, "fleet-"+name, nil, extra...)
}

// newFleetNodeOn is newFleetNode on the token labelled label, which
// several nodes may share (one SoftHSM token directory: a network HSM's
// partition); view is the test's open view of it, nil to open one.
func newFleetNodeOn(t *testing.T, pg *fixture.Postgres, dsn, secretFile, name, label string, view *hsm.Token, extra ...string) *fleetNode {
	t.Helper()
	tok := baseTok.With(label)
	if view == nil {
		var err error
		view, err = hsm.Open(context.Background(), hsm.Config{
			Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, MaxSessions: 4, PoolWaitTimeout: time.Minute,
		}, testLog)
		if err != nil {
			t.Fatalf("open the test's view of token %s: %v", tok.Label, err)
		}
		t.Cleanup(func() { view.Close() })
	}
	port := freePort(t)
	in := newInstanceWith(t, instanceOptions{
		Tok: tok, View: view, Database: dsn, Listen: fmt.Sprintf("127.0.0.1:%d", port),
		Extra: append([]string{
			"database_password_file: " + pg.PasswordFile,
			"cluster:",
			"  node_name: " + name,
			fmt.Sprintf("  advertise_url: http://127.0.0.1:%d", port),
			"  secret_file: " + secretFile,
			"  heartbeat_interval: " + fleetHeartbeat.String(),
			"  node_timeout: " + fleetTimeout.String(),
		}, extra...),
	})
	return &fleetNode{name: name, in: in}
}

func (n *fleetNode) start(t *testing.T) {
	t.Helper()
	n.d = n.in.start(t)
	n.client = loadgen.NewClient(n.d.Base, "", 8, time.Minute)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newFleet starts nodes named names on one new database of pg.
func newFleet(t *testing.T, pg *fixture.Postgres, names ...string) ([]*fleetNode, string) {
	t.Helper()
	return newFleetWith(t, pg, nil, names...)
}

// newFleetWith is newFleet with extra lines in every node's config.
func newFleetWith(t *testing.T, pg *fixture.Postgres, extra []string, names ...string) ([]*fleetNode, string) {
	t.Helper()
	dsn := pg.CreateDB(t, t.Name())
	secret := filepath.Join(t.TempDir(), "cluster-secret")
	if err := os.WriteFile(secret, []byte("fleet-test-shared-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Every token exists before the test's first view opens the module:
	// SoftHSM reads its token directory only when it is initialised.
	for _, name := range names {
		if err := baseTok.AddToken("fleet-" + name); err != nil {
			t.Fatal(err)
		}
	}
	var nodes []*fleetNode
	for _, name := range names {
		n := newFleetNode(t, pg, dsn, secret, name, extra...)
		n.start(t)
		t.Cleanup(func() { n.d.kill() })
		nodes = append(nodes, n)
	}
	waitFleet(t, nodes[0], names...)
	return nodes, dsn
}

// nodesView is GET /csrd/v1/nodes.
type nodesView struct {
	Nodes []struct {
		Name   string
		Live   bool
		Tokens []struct{ Label, Serial string }
	}
}

func getNodes(t *testing.T, n *fleetNode) nodesView {
	t.Helper()
	var v nodesView
	status, body := call(t, http.MethodGet, "http://"+n.d.Addr+"/csrd/v1/nodes", nil)
	if status != http.StatusOK || json.Unmarshal(body, &v) != nil {
		t.Fatalf("GET /csrd/v1/nodes on %s: %d %s", n.name, status, body)
	}
	return v
}

// waitFleet waits until n sees every named node live, each with its token.
func waitFleet(t *testing.T, n *fleetNode, names ...string) {
	t.Helper()
	waitFor(t, 15*time.Second, "every node live with its token", func() bool {
		live := 0
		for _, v := range getNodes(t, n).Nodes {
			if slices.Contains(names, v.Name) && v.Live && len(v.Tokens) == 1 && v.Tokens[0].Label == "fleet-"+v.Name {
				live++
			}
		}
		return live == len(names)
	})
}

// call sends one Keyfactor API request and returns the status and body.
func call(t *testing.T, method, url string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

// TestFleet runs three nodes on one PostgreSQL database, each with its own
// SoftHSM token: keys are made on every node; every node lists all records;
// a delete sent to one node of a key in another's token destroys it there,
// and so does an import marry a certificate there; node b killed with
// SIGKILL under load on all three leaves a and c answering (b's keys: 503
// naming b's token), every answered CSR recorded, no id or label twice; b
// restarted reconciles its token; the whole fleet's audit chain verifies.
func TestFleet(t *testing.T) {
	fullRunOnly(t, "three nodes on one PostgreSQL: forwarding, a node killed under load, the fleet's audit chain")
	pg := fixture.SharedPostgres(t)
	nodes, dsn := newFleet(t, pg, "a", "b", "c")
	a, b, c := nodes[0], nodes[1], nodes[2]
	ctx := context.Background()
	ca := fixture.NewCA(t, "csrd e2e CA")

	// Keys on every node, listed by every node.
	made := map[int64]*fleetNode{}
	csrs := map[int64]string{}
	for i, n := range nodes {
		for j := range 2 {
			ans := n.client.Generate(ctx, p256Body(int64(10*i+j)))
			if err := ans.Failure(); err != nil {
				t.Fatalf("Generate on %s: %v", n.name, err)
			}
			made[ans.ID], csrs[ans.ID] = n, ans.CSR
		}
	}
	for _, n := range nodes {
		status, body := call(t, http.MethodGet, n.d.Base+"/CSRGeneration/Pending?ReturnLimit=100", nil)
		var list []struct{ ID int64 }
		if status != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list) != len(made) {
			t.Fatalf("pending list on %s: %d, %d records, want %d: %s", n.name, status, len(list), len(made), body)
		}
	}

	db, err := store.Open(ctx, dsn, store.WithPassword(pg.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keyOf := func(id int64) hsm.KeyRef {
		rec, err := db.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}
	}
	onNode := func(n *fleetNode) (ids []int64) {
		for id, m := range made {
			if m == n {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		return ids
	}

	// A delete sent to a of a key in b's token is carried out by b.
	del := onNode(b)[0]
	if ans := a.client.Delete(ctx, del); ans.Failure() != nil {
		t.Fatalf("delete of b's key %d sent to a: %v", del, ans.Failure())
	}
	if objs, err := b.in.View.ObjectsOf(ctx, keyOf(del)); err != nil || len(objs) != 0 {
		t.Errorf("b's token after the forwarded delete: %v, %v; want the key gone", objs, err)
	}
	if rec, _ := db.Get(ctx, del); rec.State != store.StateDeleted {
		t.Errorf("record %d is %s after the forwarded delete", del, rec.State)
	}

	// An import sent to c of a certificate for a key in a's token.
	imp := onNode(a)[0]
	blk, _ := pem.Decode([]byte(csrs[imp]))
	cr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if ans := c.client.Import(ctx, issuePEM(t, ca, cr)); ans.Failure() != nil || ans.ID != imp {
		t.Fatalf("import for a's key %d sent to c: id %d, %v", imp, ans.ID, ans.Failure())
	}
	if objs, err := a.in.View.ObjectsOf(ctx, keyOf(imp)); err != nil || !slices.Contains(objs, hsm.ClassCertificate) {
		t.Errorf("a's token after the forwarded import: %v, %v; want the certificate beside the key", objs, err)
	}
	if rec, _ := db.Get(ctx, imp); rec.State != store.StateMarried {
		t.Errorf("record %d is %s after the forwarded import", imp, rec.State)
	}
	checkForwardAudit(t, db, del, "a", "b")
	checkForwardAudit(t, db, imp, "c", "a")

	// Load on all three; b is killed in the middle of it.
	var (
		mu       sync.Mutex
		acked    = map[int64]*fleetNode{}
		killed   atomic.Bool
		stop     atomic.Bool
		wg       sync.WaitGroup
		badMu    sync.Mutex
		bad      []string
		sent     atomic.Int64
		answered atomic.Int64
	)
	for _, n := range nodes {
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; !stop.Load(); i++ {
					sent.Add(1)
					ans := n.client.Generate(ctx, p256Body(int64(1000*w+i)))
					if ans.Failure() == nil {
						answered.Add(1)
						mu.Lock()
						acked[ans.ID] = n
						mu.Unlock()
						continue
					}
					if n == b && killed.Load() {
						return // b's clients see it die: connection errors, nothing to check
					}
					badMu.Lock()
					bad = append(bad, fmt.Sprintf("%s: %v", n.name, ans.Failure()))
					badMu.Unlock()
				}
			}()
		}
	}
	waitFor(t, 30*time.Second, "load under way", func() bool { return answered.Load() >= 12 })
	killed.Store(true)
	b.d.kill()
	atKill := answered.Load()
	waitFor(t, 30*time.Second, "a and c answering after b died", func() bool { return answered.Load() >= atKill+24 })
	// b's keys: 503 naming its token, from a node that cannot reach it.
	other := onNode(b)[1]
	if ans := c.client.Delete(ctx, other); ans.Status != http.StatusServiceUnavailable ||
		!strings.Contains(ans.Message, `"fleet-b"`) || ans.RetryAfter == "" {
		t.Errorf("delete of a key in the dead node's token: %d %s %q (Retry-After %q); want 503 naming token fleet-b",
			ans.Status, ans.ErrorCode, ans.Message, ans.RetryAfter)
	}
	stop.Store(true)
	wg.Wait()
	for _, s := range bad {
		t.Errorf("unexpected answer under load: %s", s)
	}

	// b comes back: its start-up reconciles its token (the Generates the
	// kill interrupted), and it serves again; its keys can be deleted again.
	b.start(t)
	waitFleet(t, a, "a", "b", "c")
	if n := b.d.logCount("reconciliation done"); n == 0 {
		t.Errorf("b did not reconcile at start:\n%s", b.d.tail(20))
	}
	if ans := c.client.Delete(ctx, other); ans.Failure() != nil {
		t.Errorf("delete of b's key %d through c once b is back: %v", other, ans.Failure())
	}

	// Every answered CSR is a pending record whose key is in its node's
	// token; nothing is left generating; no id or label twice.
	for id, n := range acked {
		rec, err := db.Get(ctx, id)
		if err != nil || rec.State != store.StatePending || rec.TokenLabel != "fleet-"+n.name {
			t.Errorf("answered record %d (node %s): %+v, %v", id, n.name, rec, err)
			continue
		}
		if objs, err := n.in.View.ObjectsOf(ctx, keyOf(id)); err != nil || len(objs) < 2 {
			t.Errorf("answered record %d: its key in %s's token: %v, %v", id, n.name, objs, err)
		}
	}
	counts, err := db.CountByState(ctx)
	if err != nil || counts[store.StateGenerating] != 0 {
		t.Errorf("records by state after b's restart: %v, %v; want none generating", counts, err)
	}
	recs, err := db.ListKeys(ctx, store.KeyQuery{Limit: store.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		if seen[r.KeyLabel] {
			t.Errorf("label %s twice", r.KeyLabel)
		}
		seen[r.KeyLabel] = true
	}
	t.Logf("%d Generates sent, %d answered under load, %d records in all", sent.Load(), answered.Load(), len(recs))

	// One audit chain for the whole fleet.
	rep, err := db.VerifyAudit(ctx)
	if err != nil || rep.Rows < int64(len(acked)) {
		t.Errorf("fleet audit chain: %+v, %v", rep, err)
	}
	for _, n := range nodes {
		n.d.checkNoRace(t)
	}
}

// checkForwardAudit finds the rows of a forwarded operation on record id:
// one by the node it was sent to ("forwarded to node to"), one by the node
// that did it ("forwarded by node from"), both under the client's identity.
func checkForwardAudit(t *testing.T, db *store.Store, id int64, from, to string) {
	t.Helper()
	rows, err := db.ListAudit(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		if r.RecordID == id && strings.Contains(r.Detail, "forwarded") {
			got = append(got, fmt.Sprintf("%s %s %s", r.Actor, r.Result, r.Detail))
		}
	}
	want := []string{"anonymous ok forwarded by node " + from, "anonymous ok forwarded to node " + to}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("audit rows of the forwarded operation on record %d: %q, want %q", id, got, want)
	}
}
