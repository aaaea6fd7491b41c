package e2e

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/csrd/csrd/api"
	"github.com/csrd/csrd/store"
	"github.com/csrd/csrd/tools/loadgen"
)

// mountTmpfs mounts a tmpfs of the given size (e.g. "2m") on a fresh
// directory and unmounts it when the test ends. Mounting needs root
// (CAP_SYS_ADMIN); `make test` and CI run as root. A failed mount fails the
// test rather than skipping it: a disk-full test that quietly skipped would
// hide exactly the failure it exists to catch.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("csrd-test", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount a %s tmpfs on %s: %v (the disk-fault tests need root, as `make test` and CI have)", size, dir, err)
	}
	// Registered after TempDir's own clean-up, so it runs before it.
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a filler file into dir until the file system is full, then
// gives back slack bytes. Removing the file returns the space.
func fill(t *testing.T, dir string, slack int64) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if slack > 0 {
		if err := f.Truncate(max(0, n-slack)); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func p256Body(n int64) []byte {
	m, _ := loadgen.ParseMix("p256")
	return m.Body(rand.New(rand.NewPCG(uint64(n), 0)), n)
}

// TestDiskFull puts the database on a tiny tmpfs and fills it: Generate
// answers 507 with the store-full error body and leaves no key in the token
// (it never makes one, or destroys the one it made when the last write
// fails). Sweeping the free space a few KiB at a time lands the failure on
// each of Generate's writes in turn. When the space returns, the same
// process serves again — no restart — and a restart finds everything
// consistent.
func TestDiskFull(t *testing.T) {
	fullRunOnly(t, "a full disk answering 507, leaving no key behind, and recovering without a restart")
	fs := mountTmpfs(t, "2m")
	in := newInstance(t, "diskfull", filepath.Join(fs, "csrd.db"))
	d := in.start(t)
	defer func() { d.kill() }()
	client := &loadgen.Client{HTTP: &http.Client{Timeout: time.Minute}, Base: d.Base}
	ctx := context.Background()
	led := newLedger()
	var n int64
	gen := func() loadgen.Answer {
		n++
		a := client.Generate(ctx, p256Body(n))
		if a.Err != nil {
			t.Fatalf("request %d: %v", n, a.Err)
		}
		if a.Status == http.StatusOK {
			led.ack(t, a.ID, a.CSR)
		}
		return a
	}
	if a := gen(); a.Status != http.StatusOK {
		t.Fatalf("before the disk fills: %d %s", a.Status, a.Message)
	}

	filler := fill(t, fs, 0)
	for range 3 {
		a := gen()
		if a.Status != http.StatusInsufficientStorage || a.ErrorCode != api.CodeStoreFull {
			t.Errorf("disk full: %d %s %q, want 507 %s", a.Status, a.ErrorCode, a.Message, api.CodeStoreFull)
		}
		if !strings.Contains(a.Message, "no space") {
			t.Errorf("507 message %q does not say the disk is full", a.Message)
		}
	}
	checkOwned(t, in)

	statuses := map[int]int{}
	for slack := int64(4 << 10); slack <= 96<<10; slack += 4 << 10 {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		filler = fill(t, fs, slack)
		for range 3 {
			a := gen()
			statuses[a.Status]++
			if a.Status != http.StatusOK && a.Status != http.StatusInsufficientStorage {
				t.Errorf("free space %d KiB: %d %s %q, want 200 or 507", slack>>10, a.Status, a.ErrorCode, a.Message)
			}
		}
		checkOwned(t, in)
	}
	t.Logf("free-space sweep 4..96 KiB: statuses %v", statuses)
	if statuses[http.StatusInsufficientStorage] == 0 {
		t.Error("the sweep never hit a full disk: the test proved nothing")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if a := gen(); a.Status != http.StatusOK {
			t.Errorf("space is back, same process: %d %s %q", a.Status, a.ErrorCode, a.Message)
		}
	}
	// Records whose failure could not be written while the disk was full
	// are finished by csrd's background retry once space is back (backoff
	// tops out at 10 s), without a restart.
	waitNoneGenerating(t, in, 30*time.Second)
	checkOwned(t, in)
	t.Logf("507s after the key existed: %d with the record marked failed at once, %d marked failed by the background retry",
		d.logCount("generate failed; key material destroyed, record marked failed"),
		d.logCount("generate failed; after retrying, key material destroyed and record marked failed"))
	if err := d.stop(20 * time.Second); err != nil {
		t.Errorf("clean stop: %v", err)
	}
	d.checkNoRace(t)
	d = in.start(t)
	cen := checkInvariants(t, in, led)
	t.Logf("after restart: records %v, %d csrd objects", cen.Records, cen.Objects)
}

// waitNoneGenerating polls the database until no record is "generating".
func waitNoneGenerating(t *testing.T, in *instance, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, in.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(timeout)
	for {
		recs, err := db.ListByState(ctx, store.StateGenerating)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records still generating %v after the fault ended", len(recs), timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDiskFullAtStart: csrd on a full disk with a new database cannot even
// create its schema; it must exit with an error that says so, having made
// nothing in the token.
func TestDiskFullAtStart(t *testing.T) {
	fullRunOnly(t, "csrd exiting with a clear error on a full disk at start, having made nothing")
	fs := mountTmpfs(t, "256k")
	in := newInstance(t, "diskfull-start", filepath.Join(fs, "csrd.db"))
	fill(t, fs, 0)
	d, err := in.spawn()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.exited:
	case <-time.After(startTimeout):
		d.kill()
		t.Fatal("csrd kept running on a full disk with no schema")
	}
	var ee *exec.ExitError
	if !errors.As(d.waitErr, &ee) || ee.ExitCode() != 1 {
		t.Errorf("exit: %v, want status 1", d.waitErr)
	}
	out := d.tail(5)
	t.Logf("csrd on a full disk: %s", out)
	if !strings.Contains(out, "full") {
		t.Errorf("start-up error does not say the disk is full:\n%s", out)
	}
	if objs, err := in.View.ListObjects(context.Background(), ""); err != nil || len(objs) != 0 {
		t.Errorf("token objects after a failed start: %v %v", objs, err)
	}
}
