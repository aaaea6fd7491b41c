package loadgen

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// The one reader of /proc for the tools: a process's CPU time, resident
// memory and threads (Linux).

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat; it is
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// CPUSeconds returns the user+system CPU time of process pid (all threads),
// from /proc/PID/stat.
func CPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("loadgen: %w", err)
	}
	// The command name (field 2) may contain spaces; fields after ')' are fixed.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("loadgen: /proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("loadgen: /proc/%d/stat: %d fields", pid, len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("loadgen: /proc/%d/stat: bad utime/stime", pid)
	}
	return float64(u+s) / clockTicks, nil
}

// SelfCPUSeconds returns this process's user+system CPU time from
// getrusage, which Linux derives from the scheduler's nanosecond runtime:
// /proc's 10 ms ticks round a client's share of a short window (0.1 ms
// per request) to nothing. Another process's CPU can only be read from
// /proc (CPUSeconds); over windows of seconds a tick is under 1 % of it.
func SelfCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// RSS returns the resident set size of pid in bytes (VmRSS).
func RSS(pid int) (int64, error) { return statusBytes(pid, "VmRSS:") }

// PeakRSS returns the highest resident set size of pid in bytes (VmHWM),
// since it started or since ResetPeakRSS.
func PeakRSS(pid int) (int64, error) { return statusBytes(pid, "VmHWM:") }

// ResetPeakRSS makes VmHWM start again from the current RSS (Linux ≥ 4.0),
// so that a measurement window reports its own peak. It reports whether
// that worked.
func ResetPeakRSS(pid int) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
}

// Threads returns the number of threads of pid.
func Threads(pid int) (int, error) {
	v, err := statusValue(pid, "Threads:")
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("loadgen: /proc/%d/status: Threads %q: %w", pid, v, err)
	}
	return n, nil
}

// MiB is b bytes in MiB.
func MiB(b int64) float64 { return float64(b) / (1 << 20) }

// statusBytes reads the kB line key of /proc/PID/status, in bytes.
func statusBytes(pid int, key string) (int64, error) {
	v, err := statusValue(pid, key)
	if err != nil {
		return 0, err
	}
	kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("loadgen: /proc/%d/status: %s %q: %w", pid, strings.TrimSuffix(key, ":"), v, err)
	}
	return kb << 10, nil
}

// statusValue is the value of the line key of /proc/PID/status.
func statusValue(pid int, key string) (string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", fmt.Errorf("loadgen: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			return strings.TrimSpace(rest), nil
		}
	}
	return "", fmt.Errorf("loadgen: /proc/%d/status: no %s", pid, strings.TrimSuffix(key, ":"))
}
