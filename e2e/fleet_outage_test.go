package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/store"
	"github.com/csrd/csrd/tools/loadgen"
)

// TestPostgresRestartUnderLoad stops the PostgreSQL server under two nodes
// generating keys, then starts it again. While it is away every answer is
// a success (finished before) or a clean 503 0xA0050003 with Retry-After,
// /readyz says the database is failing, and no key is left in a token
// without its record; once it is back both nodes serve again without a
// restart, every answered CSR is a pending record, and the keys of the
// Generates the outage broke are destroyed and their records failed.
func TestPostgresRestartUnderLoad(t *testing.T) {
	fullRunOnly(t, "PostgreSQL restarted under load: 503s, then recovery")
	pg := fixture.StartPostgres(t, fixture.PostgresOptions{})
	for _, name := range []string{"p", "q"} {
		if err := baseTok.AddToken("fleet-" + name); err != nil {
			t.Fatal(err)
		}
	}
	dsn := pg.CreateDB(t, "outage")
	secret := filepath.Join(t.TempDir(), "cluster-secret")
	writePIN(t, secret, "outage-test-shared-secret-0123456789")
	var nodes []*fleetNode
	for _, name := range []string{"p", "q"} {
		n := newFleetNode(t, pg, dsn, secret, name)
		n.start(t)
		t.Cleanup(func() { n.d.kill() })
		nodes = append(nodes, n)
	}
	ctx := context.Background()
	var (
		mu           sync.Mutex
		acked        = map[int64]*fleetNode{}
		unavailable  atomic.Int64
		answered     atomic.Int64
		stop, back   atomic.Bool
		bad          []string
		wg           sync.WaitGroup
		afterOutage  atomic.Int64
		firstSuccess = make(chan time.Time, 1)
	)
	for _, n := range nodes {
		for w := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; !stop.Load(); i++ {
					ans := n.client.Generate(ctx, p256Body(int64(1000*w+i)))
					switch {
					case ans.Failure() == nil:
						answered.Add(1)
						mu.Lock()
						acked[ans.ID] = n
						mu.Unlock()
						if back.Load() && afterOutage.Add(1) == 1 {
							firstSuccess <- time.Now()
						}
					case ans.Status == http.StatusServiceUnavailable && ans.ErrorCode == "0xA0050003" && ans.RetryAfter != "":
						unavailable.Add(1)
						time.Sleep(100 * time.Millisecond)
					default:
						mu.Lock()
						bad = append(bad, fmt.Sprintf("%s: %d %s %s %v", n.name, ans.Status, ans.ErrorCode, ans.Message, ans.Err))
						mu.Unlock()
						time.Sleep(100 * time.Millisecond)
					}
				}
			}()
		}
	}
	waitFor(t, 30*time.Second, "load under way", func() bool { return answered.Load() >= 10 })
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "clean 503s while the database is away", func() bool { return unavailable.Load() >= 6 })
	for _, n := range nodes {
		if status, a := readyzBody(t, n.d); status != http.StatusServiceUnavailable || a.Checks["database"] == "ok" {
			t.Errorf("%s /readyz with the database away: %d %+v", n.name, status, a)
		}
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	back.Store(true)
	var recovered time.Time
	select {
	case recovered = <-firstSuccess:
	case <-time.After(30 * time.Second):
		t.Fatal("no Generate succeeded within 30 s of the database's return")
	}
	waitFor(t, 30*time.Second, "both nodes serving", func() bool { return afterOutage.Load() >= 12 })
	stop.Store(true)
	wg.Wait()
	for _, s := range bad {
		t.Errorf("unexpected answer: %s", s)
	}
	t.Logf("%d answered, %d clean 503s; first success %v after the server was back",
		answered.Load(), unavailable.Load(), recovered.Sub(restarted).Round(time.Millisecond))
	// /readyz may answer from a report made during the outage for up to
	// its cache's age (a second); then it must see the database again.
	for _, n := range nodes {
		waitFor(t, 10*time.Second, n.name+" /readyz 200 after recovery", func() bool {
			status, _ := readyzBody(t, n.d)
			return status == http.StatusOK
		})
	}

	db, err := store.Open(ctx, dsn, store.WithPassword(pg.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for id := range acked {
		if rec, err := db.Get(ctx, id); err != nil || rec.State != store.StatePending {
			t.Errorf("answered record %d: %+v, %v", id, rec, err)
		}
	}
	// The Generates the outage broke clean up in the background once the
	// database is back: no record stays generating, no key without a
	// pending record stays in a token.
	if t.Failed() {
		for _, n := range nodes {
			for _, l := range n.d.logLines() {
				if bytes.Contains([]byte(l), []byte(`"level":"error"`)) || bytes.Contains([]byte(l), []byte(`"level":"warn"`)) {
					t.Logf("%s: %.600s", n.name, l)
				}
			}
		}
	}
	waitFor(t, 30*time.Second, "no record left generating", func() bool {
		counts, err := db.CountByState(ctx)
		return err == nil && counts[store.StateGenerating] == 0
	})
	for _, n := range nodes {
		for _, o := range n.in.objects(t, lifecycle.LabelPrefix) {
			id, _, ok := lifecycle.ParseLabel(o.Ref.Label)
			if !ok {
				continue // not a key's (the audit key, csrd-audit-v1)
			}
			rec, err := db.Get(ctx, id)
			if err != nil || rec.State != store.StatePending {
				t.Errorf("%s's token holds %s (%s) without a pending record: %+v, %v", n.name, o.Ref.Label, o.Class, rec, err)
			}
		}
	}
	if _, err := db.VerifyAudit(ctx); err != nil {
		t.Errorf("audit chain after the outage: %v", err)
	}
}

// TestMigrateThenServe moves a SQLite appliance with records in every
// state to PostgreSQL and serves them from there: a pending CSR is read, a
// certificate imported, a key deleted, a new key made after the old ids,
// and the audit chain — begun on SQLite — verifies.
func TestMigrateThenServe(t *testing.T) {
	fullRunOnly(t, "a SQLite appliance migrated to PostgreSQL and served from there")
	pg := fixture.SharedPostgres(t)
	if err := baseTok.AddToken("fleet-m"); err != nil {
		t.Fatal(err)
	}
	lite := newInstanceWith(t, instanceOptions{Tok: baseTok.With("fleet-m")})
	d := lite.start(t)
	ctx := context.Background()
	var ids []int64
	csrs := map[int64]string{}
	for i := range 5 {
		ans := loadClient(d).Generate(ctx, p256Body(int64(i)))
		if err := ans.Failure(); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ans.ID)
		csrs[ans.ID] = ans.CSR
	}
	if ans := loadClient(d).Delete(ctx, ids[0]); ans.Failure() != nil {
		t.Fatal(ans.Failure())
	}
	ca := fixture.NewCA(t, "csrd e2e CA")
	issue := func(id int64) string {
		blk, _ := pem.Decode([]byte(csrs[id]))
		cr, err := x509.ParseCertificateRequest(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return issuePEM(t, ca, cr)
	}
	if ans := loadClient(d).Import(ctx, issue(ids[1])); ans.Failure() != nil {
		t.Fatal(ans.Failure())
	}
	if err := d.stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}

	dsn := pg.CreateDB(t, "migrate")
	db, err := store.Open(ctx, dsn, store.WithPassword(pg.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := store.CopySQLite(ctx, lite.Database, db); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	secret := filepath.Join(t.TempDir(), "cluster-secret")
	writePIN(t, secret, "migrate-test-shared-secret-0123456789")
	n := newFleetNode(t, pg, dsn, secret, "m")
	n.start(t)
	defer n.d.kill()

	status, body := call(t, http.MethodGet, fmt.Sprintf("%s/CSRGeneration/Pending/%d", n.d.Base, ids[2]), nil)
	if status != http.StatusOK || !bytes.Contains(body, []byte("BEGIN CERTIFICATE REQUEST")) {
		t.Errorf("pending CSR %d after the migration: %d %s", ids[2], status, body)
	}
	if ans := n.client.Import(ctx, issue(ids[3])); ans.Failure() != nil || ans.ID != ids[3] {
		t.Errorf("import after the migration: %d, %v", ans.ID, ans.Failure())
	}
	if ans := n.client.Delete(ctx, ids[4]); ans.Failure() != nil {
		t.Errorf("delete after the migration: %v", ans.Failure())
	}
	if ans := n.client.Delete(ctx, ids[0]); ans.Status != http.StatusNotFound && ans.Status != http.StatusConflict {
		t.Errorf("delete of a record deleted before the migration: %d %s", ans.Status, ans.Message)
	}
	ans := n.client.Generate(ctx, p256Body(99))
	if ans.Failure() != nil || ans.ID <= ids[4] {
		t.Errorf("Generate after the migration: id %d, %v; want an id after %d", ans.ID, ans.Failure(), ids[4])
	}
	for id, want := range map[int64]store.State{ids[0]: store.StateDeleted, ids[1]: store.StateMarried,
		ids[2]: store.StatePending, ids[3]: store.StateMarried, ids[4]: store.StateDeleted, ans.ID: store.StatePending} {
		if rec, err := db.Get(ctx, id); err != nil || rec.State != want {
			t.Errorf("record %d: %v, %v; want %s", id, rec.State, err, want)
		}
	}
	if rec, err := db.Get(ctx, ids[4]); err == nil {
		if objs, err := n.in.View.ObjectsOf(ctx, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}); err != nil || len(objs) != 0 {
			t.Errorf("key of deleted record %d in the token: %v, %v", ids[4], objs, err)
		}
	}
	if rep, err := db.VerifyAudit(ctx); err != nil || rep.Rows < 6 {
		t.Errorf("audit chain after the migration: %+v, %v", rep, err)
	}
}

func loadClient(d *daemon) *loadgen.Client { return loadgen.NewClient(d.Base, "", 4, time.Minute) }
