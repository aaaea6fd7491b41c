package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

// TestBackupRestoreReconcile takes `csrctl backup` while Generates commit
// records and make keys without pause, lets the token move on (more keys,
// two keys of backed-up records deleted), restores the backup with
// `csrctl restore` and reconciles: the keys made after the backup are
// listed as orphans and kept until -destroy, the records whose keys were
// deleted since are marked lost, a record the backup caught half made is
// failed, and the restored audit chain verifies.
func TestBackupRestoreReconcile(t *testing.T) {
	if testing.Short() {
		t.Skip("makes keys in SoftHSM under load")
	}
	ctx := context.Background()
	dir, _, _, cfg := newTokenEnv(t, "csrctl-backup")
	cli := func(want int, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != want {
			t.Fatalf("csrctl %v: exit %d, want %d\n%s%s", args, code, want, out.String(), errOut.String())
		}
		return out.String() + errOut.String()
	}

	env, err := openKeyEnv(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu        sync.Mutex
		generated []int64
		made      atomic.Int64
		stop      atomic.Bool
		wg        sync.WaitGroup
	)
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				res, err := env.svc.Generate(ctx, lifecycle.GenerateRequest{
					Subject: fmt.Sprintf("CN=load-%d-%d.example.com", w, i),
					Key:     policy.KeyRequest{KeyType: "ECC", KeyLength: 256},
					Audit:   env.row("generate"),
				})
				if err != nil {
					t.Errorf("Generate under load: %v", err)
					return
				}
				mu.Lock()
				generated = append(generated, res.ID)
				mu.Unlock()
				made.Add(1)
			}
		}()
	}
	waitFor := func(n int64) {
		for made.Load() < n && !t.Failed() {
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(9)
	backup := filepath.Join(dir, "backup.db")
	out := cli(0, "backup", "-config", cfg, backup)
	atBackup := made.Load()
	waitFor(atBackup + 6)
	stop.Store(true)
	wg.Wait()
	if t.Failed() {
		env.Close()
		t.FailNow()
	}
	m := regexp.MustCompile(`: (\d+) records, (\d+) audit rows`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("backup output: %s", out)
	}

	// What the backup holds, read from a copy (opening the backup itself
	// would migrate it).
	inBackup := recordsOf(t, backup, filepath.Join(dir, "inspect.db"))
	var deleted []int64
	for _, id := range generated {
		if inBackup[id] == store.StatePending && len(deleted) < 2 {
			if err := env.svc.Delete(ctx, id, nil, env.row("pending_delete")); err != nil {
				t.Fatalf("Delete %d: %v", id, err)
			}
			deleted = append(deleted, id)
		}
	}
	if len(deleted) != 2 {
		t.Fatalf("the backup has fewer than two pending records: %v", inBackup)
	}

	// A restore with the database open is refused, naming the way out.
	if out := cli(1, "restore", "-config", cfg, backup); !strings.Contains(out, "stop csrd") {
		t.Errorf("restore beside an open database: %s", out)
	}
	env.Close()
	cli(0, "restore", "-config", cfg, backup)
	if out := cli(0, "audit", "verify", "-config", cfg); !strings.Contains(out, "audit log OK: "+m[2]+" rows") {
		t.Errorf("restored audit log, backup had %s rows:\n%s", m[2], out)
	}

	var orphans, interrupted []int64
	for _, id := range generated {
		switch inBackup[id] {
		case "":
			orphans = append(orphans, id)
		case store.StateGenerating:
			interrupted = append(interrupted, id)
		}
	}
	slices.Sort(orphans)
	slices.Sort(deleted)
	if len(orphans) < 6 {
		t.Fatalf("%d keys made after the backup, want at least 6", len(orphans))
	}
	out = cli(0, "reconcile", "-config", cfg, "-min-age", "1ns")
	if got := labelsIn(`orphan: label="csrd-(\d+)" [^\n]*; kept`, out); !slices.Equal(got, orphans) {
		t.Errorf("orphans kept %v, want the keys made after the backup %v\n%s", got, orphans, out)
	}
	if got := labelsIn(`lost: record (\d+) `, out); !slices.Equal(got, deleted) {
		t.Errorf("lost %v, want the records whose keys were deleted after the backup %v\n%s", got, deleted, out)
	}
	if len(interrupted) > 0 && !strings.Contains(out, fmt.Sprintf("%d interrupted generates marked failed", len(interrupted))) {
		t.Errorf("the %d records the backup caught generating were not failed:\n%s", len(interrupted), out)
	}
	out = cli(0, "reconcile", "-config", cfg, "-min-age", "1ns", "-destroy")
	if got := labelsIn(`orphan: label="csrd-(\d+)" [^\n]*; destroyed`, out); !slices.Equal(got, orphans) {
		t.Errorf("-destroy destroyed %v, want %v\n%s", got, orphans, out)
	}
	if out = cli(0, "reconcile", "-config", cfg, "-min-age", "1ns"); !strings.Contains(out, "token and database agree") {
		t.Errorf("after -destroy:\n%s", out)
	}
	// Reconciliation audits what it destroyed and failed: the chain goes on
	// from the restored head.
	if out = cli(0, "audit", "verify", "-config", cfg); !strings.Contains(out, "audit log OK: ") {
		t.Errorf("audit log after reconciling the restored database:\n%s", out)
	}
}

// recordsOf returns the state of every record in the database backup,
// read from a restored copy at scratch.
func recordsOf(t *testing.T, backup, scratch string) map[int64]store.State {
	t.Helper()
	ctx := context.Background()
	if _, err := store.Restore(ctx, backup, scratch); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, scratch)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs, err := db.ListKeys(ctx, store.KeyQuery{Limit: store.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]store.State{}
	for _, r := range recs {
		out[r.ID] = r.State
	}
	return out
}

// labelsIn returns the record ids the first group of re captures in out,
// ascending.
func labelsIn(re, out string) []int64 {
	var ids []int64
	for _, m := range regexp.MustCompile(re).FindAllStringSubmatch(out, -1) {
		id, _ := strconv.ParseInt(m[1], 10, 64)
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
