package bench

import (
	"os"
	"testing"
	"time"
)

// TestSelfCPUSeconds: a few milliseconds of work show in the benchmark's
// own CPU figure (/proc's 10 ms ticks would mostly show none), and the
// figure agrees with /proc's to within a couple of ticks.
func TestSelfCPUSeconds(t *testing.T) {
	before := selfCPUSeconds()
	for end := time.Now().Add(3 * time.Millisecond); time.Now().Before(end); {
	}
	after := selfCPUSeconds()
	if after <= before {
		t.Fatalf("3 ms of work: CPU %v → %v, want an increase", before, after)
	}
	proc, err := cpuSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if now := selfCPUSeconds(); now < proc-0.05 || now > proc+0.05 {
		t.Errorf("getrusage %.3fs against /proc %.3fs", now, proc)
	}
}
