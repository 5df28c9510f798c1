package engine

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/hullproject/hull/runtime/container"
	"golang.org/x/sys/unix"
)

// Sample is one reading of a container's counters.
type Sample struct {
	At time.Time
	// CPU is the container's CPU time and System the host's, both in ns.
	CPU, System uint64
	OnlineCPUs  int
	MemUsage    uint64
	MemLimit    uint64
	NetRx       uint64
	NetTx       uint64
	BlockRead   uint64
	BlockWrite  uint64
	Pids        uint64
}

// Stats is what `stats` shows of a container, computed as Docker does.
type Stats struct {
	CPUPercent float64
	MemUsage   uint64
	MemLimit   uint64
	MemPercent float64
	NetRx      uint64
	NetTx      uint64
	BlockRead  uint64
	BlockWrite uint64
	Pids       uint64
}

// Sample reads a running container's counters.
func (e *Engine) Sample(c *Container) (*Sample, error) {
	ctr, err := e.RuntimeContainer(c)
	if err != nil {
		return nil, err
	}
	st, err := ctr.Stats()
	if err != nil {
		return nil, err
	}
	s := &Sample{At: time.Now(), CPU: st.CPU.UsageTotal, System: systemCPU(), OnlineCPUs: runtime.NumCPU()}
	// Docker leaves the page cache out of the usage: it can be reclaimed.
	s.MemUsage = st.Memory.Usage
	if st.Memory.Cache < s.MemUsage {
		s.MemUsage -= st.Memory.Cache
	}
	s.MemLimit = st.Memory.Limit
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		host := uint64(si.Totalram) * uint64(si.Unit)
		if s.MemLimit == 0 || s.MemLimit > host {
			s.MemLimit = host
		}
	}
	s.BlockRead, s.BlockWrite = st.IO.ReadBytes, st.IO.WriteBytes
	s.Pids = st.Pids.Current
	if ctr.Status() == container.Running || ctr.Status() == container.Paused {
		s.NetRx, s.NetTx = netCounters(ctr.State.Pid)
	}
	return s, nil
}

// Compute turns two samples into Docker's figures: CPU % is the
// container's share of the host's CPU time between them, times the number
// of CPUs.
func Compute(prev, cur *Sample) Stats {
	st := Stats{
		MemUsage: cur.MemUsage, MemLimit: cur.MemLimit, NetRx: cur.NetRx, NetTx: cur.NetTx,
		BlockRead: cur.BlockRead, BlockWrite: cur.BlockWrite, Pids: cur.Pids,
	}
	if prev != nil && cur.System > prev.System && cur.CPU >= prev.CPU {
		st.CPUPercent = float64(cur.CPU-prev.CPU) / float64(cur.System-prev.System) * float64(cur.OnlineCPUs) * 100
	}
	if cur.MemLimit > 0 {
		st.MemPercent = float64(cur.MemUsage) / float64(cur.MemLimit) * 100
	}
	return st
}

// systemCPU is the host's total CPU time in ns, from /proc/stat.
func systemCPU() uint64 {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || fields[0] != "cpu" {
			continue
		}
		var ticks uint64
		for _, v := range fields[1:8] {
			n, _ := strconv.ParseUint(v, 10, 64)
			ticks += n
		}
		// USER_HZ is 100 on Linux.
		return ticks * (1e9 / 100)
	}
	return 0
}

// netCounters sums the received and sent bytes of the container's
// interfaces, but loopback, from its network namespace's /proc view.
func netCounters(pid int) (rx, tx uint64) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/net/dev")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) == "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			continue
		}
		r, _ := strconv.ParseUint(f[0], 10, 64)
		t, _ := strconv.ParseUint(f[8], 10, 64)
		rx += r
		tx += t
	}
	return rx, tx
}
