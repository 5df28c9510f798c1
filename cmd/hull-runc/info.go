package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"github.com/spf13/cobra"

	"github.com/hullproject/hull/runtime/caps"
	"github.com/hullproject/hull/runtime/cgroups"
	"github.com/hullproject/hull/runtime/rootfs"
	"github.com/hullproject/hull/runtime/seccomp"
	"github.com/hullproject/hull/runtime/spec"
)

func newPsCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "ps [--format table|json] ID [PS_OPTIONS...]",
		Short: "List the processes of a container",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadContainer(args[0])
			if err != nil {
				return err
			}
			pids, err := c.Processes()
			if err != nil {
				return err
			}
			switch format {
			case "json":
				if pids == nil {
					pids = []int{}
				}
				return json.NewEncoder(os.Stdout).Encode(pids)
			case "table":
			default:
				return fmt.Errorf("unknown --format %q (use table or json)", format)
			}
			psArgs := args[1:]
			if len(psArgs) == 0 {
				psArgs = []string{"-ef"}
			}
			out, err := exec.Command("ps", psArgs...).Output()
			if err != nil {
				return fmt.Errorf("run ps %s: %w", strings.Join(psArgs, " "), err)
			}
			return filterPs(out, pids, os.Stdout)
		},
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().StringVarP(&format, "format", "f", "table", "table or json")
	return cmd
}

// filterPs keeps ps's header and the lines whose PID column is in pids.
func filterPs(out []byte, pids []int, w io.Writer) error {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) == 0 {
		return nil
	}
	col := -1
	for i, h := range strings.Fields(lines[0]) {
		if h == "PID" {
			col = i
		}
	}
	if col < 0 {
		return errors.New("ps output has no PID column")
	}
	in := map[int]bool{}
	for _, p := range pids {
		in[p] = true
	}
	fmt.Fprintln(w, lines[0])
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) <= col {
			continue
		}
		if p, err := strconv.Atoi(f[col]); err == nil && in[p] {
			fmt.Fprintln(w, l)
		}
	}
	return nil
}

func newSpecCmd() *cobra.Command {
	var rootless bool
	var bundle string
	cmd := &cobra.Command{
		Use:   "spec",
		Short: "Write a default config.json into the bundle directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path := filepath.Join(bundle, "config.json")
			if _, err := os.Stat(path); err == nil {
				return fmt.Errorf("%s already exists: remove it first", path)
			}
			s := spec.Default(rootless, uint32(os.Geteuid()), uint32(os.Getegid()))
			data, err := json.MarshalIndent(s, "", "\t")
			if err != nil {
				return err
			}
			return os.WriteFile(path, append(data, '\n'), 0o666)
		},
	}
	cmd.Flags().BoolVar(&rootless, "rootless", false, "generate a config for a rootless container")
	cmd.Flags().StringVarP(&bundle, "bundle", "b", ".", "bundle directory")
	return cmd
}

func newFeaturesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "features",
		Short: "Print the runtime's supported features as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			yes, no := true, false
			var nsTypes []string
			for _, t := range spec.NamespaceTypes {
				nsTypes = append(nsTypes, string(t))
			}
			var mountOpts []string
			for _, o := range []string{"async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
				"iversion", "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime", "noexec", "noiversion",
				"nolazytime", "nomand", "norelatime", "nostrictatime", "nosuid", "private", "rbind", "relatime",
				"remount", "ro", "rprivate", "rshared", "rslave", "runbindable", "rw", "shared", "silent",
				"slave", "strictatime", "suid", "sync", "unbindable"} {
				if rootfs.ParseOptions([]string{o}).Data == "" {
					mountOpts = append(mountOpts, o)
				}
			}
			mode := cgroups.DetectMode()
			v1 := mode != cgroups.Unified
			v2 := mode != cgroups.Legacy
			f := features.Features{
				OCIVersionMin: "1.0.0",
				OCIVersionMax: specs.Version,
				Hooks:         []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
				MountOptions:  mountOpts,
				Linux: &features.Linux{
					Namespaces:   nsTypes,
					Capabilities: caps.Known(),
					Cgroup:       &features.Cgroup{V1: &v1, V2: &v2, Systemd: &no, SystemdUser: &no, Rdma: &no},
					Seccomp: &features.Seccomp{
						Enabled: &yes, Actions: seccomp.KnownActions(), Operators: seccomp.KnownOperators(),
						Archs: seccomp.KnownArchs(), KnownFlags: seccomp.KnownFlags(), SupportedFlags: seccomp.KnownFlags(),
					},
					Apparmor: &features.Apparmor{Enabled: &no},
					Selinux:  &features.Selinux{Enabled: &no},
				},
				Annotations: map[string]string{"org.opencontainers.runtime-spec.features.hull.version": version},
			}
			data, err := json.MarshalIndent(f, "", "    ")
			if err != nil {
				return err
			}
			fmt.Println(string(data))
			return nil
		},
	}
}

func newUpdateCmd() *cobra.Command {
	var resources string
	var memory, pidsLimit, cpuQuota int64
	var cpuShares, cpuPeriod uint64
	var cpusetCpus, cpusetMems string
	cmd := &cobra.Command{
		Use:   "update [flags] ID",
		Short: "Change the resource limits of a running container",
		Args:  exactArgs(1, "exactly one container ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadContainer(args[0])
			if err != nil {
				return err
			}
			var r specs.LinuxResources
			if resources != "" {
				var data []byte
				if resources == "-" {
					data, err = io.ReadAll(os.Stdin)
				} else {
					data, err = os.ReadFile(resources)
				}
				if err != nil {
					return fmt.Errorf("read resources: %w", err)
				}
				dec := json.NewDecoder(bytes.NewReader(data))
				if err := dec.Decode(&r); err != nil {
					return fmt.Errorf("parse resources: %w", err)
				}
			}
			fl := cmd.Flags()
			if fl.Changed("memory") {
				ensureMemory(&r).Limit = &memory
			}
			if fl.Changed("pids-limit") {
				r.Pids = &specs.LinuxPids{Limit: &pidsLimit}
			}
			if fl.Changed("cpu-quota") {
				ensureCPU(&r).Quota = &cpuQuota
			}
			if fl.Changed("cpu-period") {
				ensureCPU(&r).Period = &cpuPeriod
			}
			if fl.Changed("cpu-shares") {
				ensureCPU(&r).Shares = &cpuShares
			}
			if fl.Changed("cpuset-cpus") {
				ensureCPU(&r).Cpus = cpusetCpus
			}
			if fl.Changed("cpuset-mems") {
				ensureCPU(&r).Mems = cpusetMems
			}
			return c.Update(&r)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&resources, "resources", "r", "", "path to a JSON file of OCI linux.resources, or - for stdin")
	f.Int64Var(&memory, "memory", 0, "memory limit in bytes")
	f.Int64Var(&pidsLimit, "pids-limit", 0, "maximum number of pids")
	f.Int64Var(&cpuQuota, "cpu-quota", 0, "CPU CFS quota in microseconds")
	f.Uint64Var(&cpuPeriod, "cpu-period", 0, "CPU CFS period in microseconds")
	f.Uint64Var(&cpuShares, "cpu-shares", 0, "CPU shares (relative weight)")
	f.StringVar(&cpusetCpus, "cpuset-cpus", "", "CPUs allowed (e.g. 0-1)")
	f.StringVar(&cpusetMems, "cpuset-mems", "", "memory nodes allowed")
	return cmd
}

func ensureMemory(r *specs.LinuxResources) *specs.LinuxMemory {
	if r.Memory == nil {
		r.Memory = &specs.LinuxMemory{}
	}
	return r.Memory
}

func ensureCPU(r *specs.LinuxResources) *specs.LinuxCPU {
	if r.CPU == nil {
		r.CPU = &specs.LinuxCPU{}
	}
	return r.CPU
}
