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
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	return ticks(pid, f[11], f[12])
}

// TreeCPUSeconds returns the user+system CPU time of pid, of the children
// it has reaped and of its live children (one level: a database server's
// backends). A server that forks a process per connection is measured
// whole this way, backends that came and went included.
func TreeCPUSeconds(pid int) (float64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	total, err := ticks(pid, f[11], f[12], f[13], f[14])
	if err != nil {
		return 0, err
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("loadgen: %w", err)
	}
	for _, e := range procs {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cf, err := statFields(child)
		if err != nil || cf[1] != strconv.Itoa(pid) {
			continue // gone meanwhile, or not a child
		}
		if v, err := ticks(child, cf[11], cf[12], cf[13], cf[14]); err == nil {
			total += v
		}
	}
	return total, nil
}

// statFields returns the fields of /proc/PID/stat after the command name
// (which may contain spaces): f[0] is field 3 (state), f[1] the parent's
// pid, f[11] and f[12] utime and stime, f[13] and f[14] the reaped
// children's.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("loadgen: /proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return nil, fmt.Errorf("loadgen: /proc/%d/stat: %d fields", pid, len(f))
	}
	return f, nil
}

// ticks adds clock-tick fields of /proc/PID/stat up, in seconds.
func ticks(pid int, fields ...string) (float64, error) {
	var sum uint64
	for _, v := range fields {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("loadgen: /proc/%d/stat: bad CPU time %q", pid, v)
		}
		sum += n
	}
	return float64(sum) / clockTicks, nil
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
