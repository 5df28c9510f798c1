package cgroups

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Set applies r controller by controller. cpuset comes first so memory
// nodes exist before memory limits matter; devices come late so that a
// failing earlier step never leaves the container with a half-written
// device list; unified comes last so raw values override converted ones.
func (m *manager) Set(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	steps := []struct {
		name string
		fn   func(*specs.LinuxResources) error
	}{
		{"cpuset", m.setCpuset},
		{"memory", m.setMemory},
		{"cpu", m.setCPU},
		{"pids", m.setPids},
		{"blkio", m.setBlkio},
		{"hugetlb", m.setHugetlb},
		{"network", m.setNetwork},
		{"rdma", m.setRdma},
		{"devices", m.setDevices},
		{"unified", m.setUnified},
	}
	for _, s := range steps {
		if err := s.fn(r); err != nil {
			return fmt.Errorf("set %s: %w", s.name, err)
		}
	}
	return nil
}

func (m *manager) setCpuset(r *specs.LinuxResources) error {
	c := r.CPU
	if c == nil {
		return nil
	}
	dir, _, skip, err := m.target("cpuset", "cpuset", c.Cpus != "" || c.Mems != "")
	if skip || err != nil {
		return err
	}
	return setCpusetFiles(dir, c.Cpus, c.Mems)
}

func (m *manager) setMemory(r *specs.LinuxResources) error {
	mem := r.Memory
	if mem == nil {
		return nil
	}
	dir, v2, skip, err := m.target("memory", "memory", memoryRequested(mem))
	if skip || err != nil {
		return err
	}
	if v2 {
		return setMemoryV2(dir, mem)
	}
	return setMemoryV1(dir, mem)
}

func (m *manager) setCPU(r *specs.LinuxResources) error {
	c := r.CPU
	if c == nil {
		return nil
	}
	dir, v2, skip, err := m.target("cpu", "cpu", cpuRequested(c))
	if skip || err != nil {
		return err
	}
	if v2 {
		return setCPUV2(dir, c)
	}
	return setCPUV1(dir, c)
}

func (m *manager) setPids(r *specs.LinuxResources) error {
	if r.Pids == nil || r.Pids.Limit == nil {
		return nil
	}
	// -1 is "no limit" and needs no controller; 0 is a real limit in
	// runtime-spec 1.3 ("0 is a valid limit value").
	dir, _, skip, err := m.target("pids", "pids", *r.Pids.Limit >= 0)
	if skip || err != nil {
		return err
	}
	return writeFile(dir, "pids.max", pidsMaxValue(*r.Pids.Limit))
}

func (m *manager) setBlkio(r *specs.LinuxResources) error {
	b := r.BlockIO
	if b == nil {
		return nil
	}
	dir, v2, skip, err := m.target("blkio", "io", blkioRequested(b))
	if skip || err != nil {
		return err
	}
	if v2 {
		return setIOV2(dir, b)
	}
	return setBlkioV1(dir, b)
}

func (m *manager) setHugetlb(r *specs.LinuxResources) error {
	if len(r.HugepageLimits) == 0 {
		return nil
	}
	dir, v2, skip, err := m.target("hugetlb", "hugetlb", true)
	if skip || err != nil {
		return err
	}
	return setHugetlb(dir, v2, r.HugepageLimits)
}

func (m *manager) setNetwork(r *specs.LinuxResources) error {
	n := r.Network
	if n == nil {
		return nil
	}
	// net_cls and net_prio exist only in cgroup v1.
	if n.ClassID != nil {
		dir, _, skip, err := m.target("net_cls", "", *n.ClassID != 0)
		if err != nil {
			return err
		}
		if !skip {
			if err := writeFile(dir, "net_cls.classid", fmt.Sprint(*n.ClassID)); err != nil {
				return err
			}
		}
	}
	if len(n.Priorities) > 0 {
		dir, _, _, err := m.target("net_prio", "", true)
		if err != nil {
			return err
		}
		for _, p := range n.Priorities {
			// One "ifname prio" pair per write: the kernel parses one.
			if err := writeFile(dir, "net_prio.ifpriomap", fmt.Sprintf("%s %d", p.Name, p.Priority)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *manager) setRdma(r *specs.LinuxResources) error {
	if len(r.Rdma) == 0 {
		return nil
	}
	dir, _, skip, err := m.target("rdma", "rdma", true)
	if skip || err != nil {
		return err
	}
	return setRdma(dir, r.Rdma)
}

func (m *manager) setDevices(r *specs.LinuxResources) error {
	// An empty list keeps what the parent allows.
	if len(r.Devices) == 0 {
		return nil
	}
	if d := m.v1Dir("devices"); d != "" {
		return setDevicesV1(d, r.Devices)
	}
	if m.v2 != "" {
		// The device "controller" of cgroup2 is an eBPF program; it
		// needs no entry in cgroup.controllers.
		return setDevicesV2(m.v2, r.Devices)
	}
	return notAvailable("devices")
}

func (m *manager) setUnified(r *specs.LinuxResources) error {
	if len(r.Unified) == 0 {
		return nil
	}
	if m.v2 == "" {
		return &ControllerError{Controller: "unified", Reason: "no cgroup2 hierarchy is mounted"}
	}
	return setUnified(m.v2, r.Unified)
}
