package bench

import (
	"os"
	"runtime"
	"strings"
)

// Machine is where the figures came from.
type Machine struct {
	NProc    int    `json:"nproc"`
	CPUModel string `json:"cpu_model"`
	SoftHSM  string `json:"softhsm"`
	Go       string `json:"go"`
	Kernel   string `json:"kernel"`
	LoadAvg  string `json:"loadavg_at_start"`
}

func machine(softhsmVersion string) Machine {
	m := Machine{NProc: runtime.NumCPU(), Go: runtime.Version(), SoftHSM: softhsmVersion}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}
