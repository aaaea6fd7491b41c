package loadgen

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestSelfCPUSeconds: a few milliseconds of work show in this process's
// own CPU figure (/proc's 10 ms ticks would mostly show none), and the
// figure agrees with /proc's to within a couple of ticks.
func TestSelfCPUSeconds(t *testing.T) {
	before := SelfCPUSeconds()
	for end := time.Now().Add(3 * time.Millisecond); time.Now().Before(end); {
	}
	after := SelfCPUSeconds()
	if after <= before {
		t.Fatalf("3 ms of work: CPU %v → %v, want an increase", before, after)
	}
	proc, err := CPUSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if now := SelfCPUSeconds(); now < proc-0.05 || now > proc+0.05 {
		t.Errorf("getrusage %.3fs against /proc %.3fs", now, proc)
	}
}

// TestProcMemory: this process's memory and threads read as plausible
// figures, and a process that does not exist is an error, never a zero.
func TestProcMemory(t *testing.T) {
	self := os.Getpid()
	rss, err := RSS(self)
	if err != nil || rss < 1<<20 {
		t.Fatalf("RSS = %d, %v; want at least 1 MiB", rss, err)
	}
	peak, err := PeakRSS(self)
	if err != nil || peak < rss {
		t.Errorf("PeakRSS = %d, %v; want at least RSS %d", peak, err, rss)
	}
	if n, err := Threads(self); err != nil || n < 2 {
		t.Errorf("Threads = %d, %v; a Go process has several", n, err)
	}
	gone := 1 << 30 // above Linux's pid_max
	if _, err := RSS(gone); err == nil {
		t.Error("RSS of a missing process: no error")
	}
	if _, err := CPUSeconds(gone); err == nil {
		t.Error("CPUSeconds of a missing process: no error")
	}
}

// TestTreeCPUSeconds: a child's CPU counts in its parent's tree figure
// while it runs and after it has been reaped, and not in the parent's own
// figure.
func TestTreeCPUSeconds(t *testing.T) {
	read := func(of func(int) (float64, error)) float64 {
		t.Helper()
		v, err := of(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	own0, tree0 := read(CPUSeconds), read(TreeCPUSeconds)
	// A shell loop of about 0.3 s of CPU, then a pause while it is still alive.
	child := exec.Command("sh", "-c", `i=0; end=$(( $(date +%s%N) + 300000000 )); while [ $(date +%s%N) -lt $end ]; do i=$((i+1)); done; sleep 2`)
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	live := read(TreeCPUSeconds)
	if err := child.Wait(); err != nil {
		t.Fatal(err)
	}
	reaped, ownGrew := read(TreeCPUSeconds), read(CPUSeconds)-own0
	if live-tree0 < ownGrew+0.1 {
		t.Errorf("live child: tree grew %.2fs, the parent alone %.2fs; want the child's 0.3s beside it", live-tree0, ownGrew)
	}
	if reaped < live {
		t.Errorf("after the child was reaped the tree shows %.2fs, less than the %.2fs while it ran", reaped, live)
	}
}
