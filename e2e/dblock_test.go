package e2e

import (
	"context"
	"database/sql"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/tools/loadgen"
)

// lockDatabase takes SQLite's write lock on path from another connection,
// as a second process (an operator's sqlite3 shell, a backup tool) would,
// and returns the function that releases it.
func lockDatabase(t *testing.T, path string) (release func()) {
	t.Helper()
	db, err := sql.Open("sqlite3", path+"?_txlock=immediate&_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin() // BEGIN IMMEDIATE: holds the write lock until Rollback
	if err != nil {
		db.Close()
		t.Fatalf("take the write lock: %v", err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if err := tx.Rollback(); err != nil {
				t.Errorf("release the write lock: %v", err)
			}
			db.Close()
		})
	}
	t.Cleanup(release)
	return release
}

// TestDatabaseLocked: while another connection holds the database's write
// lock past csrd's busy timeout (5 s), Generate answers 503 with
// Retry-After and the database error code, and creates no key; a lock
// taken while generations are in flight gives each a 200 or a 503 and
// leaves no key or "generating" record behind. Once the lock is gone the
// same process serves again.
func TestDatabaseLocked(t *testing.T) {
	fullRunOnly(t, "a locked database answering 503 with Retry-After and leaving no key or generating record")
	in := newInstance(t, "dblocked", "")
	d := in.start(t)
	defer func() { d.kill() }()
	client := &loadgen.Client{HTTP: &http.Client{Timeout: time.Minute}, Base: d.Base}
	ctx := context.Background()
	led := newLedger()
	var (
		mu sync.Mutex
		n  int64
	)
	gen := func() loadgen.Answer {
		mu.Lock()
		n++
		body := p256Body(n)
		mu.Unlock()
		a := client.Generate(ctx, body)
		if a.Err != nil {
			t.Errorf("generate: %v", a.Err)
		}
		if a.Status == http.StatusOK {
			led.ack(t, a.ID, a.CSR)
		}
		return a
	}
	if a := gen(); a.Status != http.StatusOK {
		t.Fatalf("unlocked: %d %s", a.Status, a.Message)
	}
	objects := func() int {
		objs, err := in.View.ListObjects(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		return len(objs)
	}
	before := objects()

	t.Run("locked past the busy timeout", func(t *testing.T) {
		release := lockDatabase(t, in.Database)
		defer release()
		start := time.Now()
		a := gen()
		if a.Status != http.StatusServiceUnavailable || a.ErrorCode != api.CodeStoreUnavailable {
			t.Fatalf("locked database: %d %s %q, want 503 %s", a.Status, a.ErrorCode, a.Message, api.CodeStoreUnavailable)
		}
		if s, err := strconv.Atoi(a.RetryAfter); err != nil || s < 1 {
			t.Errorf("Retry-After %q", a.RetryAfter)
		}
		if el := time.Since(start); el < 4*time.Second {
			t.Errorf("503 after %v: csrd did not wait for the lock first", el)
		}
		if after := objects(); after != before {
			t.Errorf("token objects %d before, %d after the refused generate", before, after)
		}
	})

	t.Run("locked during generation", func(t *testing.T) {
		// Concurrent generations, then the lock for 6 s, longer than the
		// busy timeout. csrd's one write connection queues its writers, so
		// the one waiting on the lock gets the 503 and the queue behind it
		// proceeds when the lock goes; whichever write a request was at,
		// nothing may be left half done.
		var wg sync.WaitGroup
		statuses := make(chan int, 16)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses <- gen().Status
			}()
		}
		time.Sleep(30 * time.Millisecond)
		release := lockDatabase(t, in.Database)
		time.Sleep(6 * time.Second)
		release()
		wg.Wait()
		close(statuses)
		hist := map[int]int{}
		for st := range statuses {
			hist[st]++
			if st != http.StatusOK && st != http.StatusServiceUnavailable {
				t.Errorf("status %d under a held lock, want 200 or 503", st)
			}
		}
		t.Logf("8 generations across a 6 s lock: %v", hist)
		waitNoneGenerating(t, in, 30*time.Second)
		checkOwned(t, in)
	})

	for range 3 {
		if a := gen(); a.Status != http.StatusOK {
			t.Errorf("lock released, same process: %d %s %q", a.Status, a.ErrorCode, a.Message)
		}
	}
	if err := d.stop(20 * time.Second); err != nil {
		t.Errorf("clean stop: %v", err)
	}
	d.checkNoRace(t)
	d = in.start(t)
	checkInvariants(t, in, led)
}
