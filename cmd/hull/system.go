package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/runtime/cgroups"
	"github.com/hullproject/hull/storage/meta"
)

func newVersionCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Show the hull version information",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := map[string]any{
				"Version": version, "GoVersion": runtime.Version(),
				"Os": runtime.GOOS, "Arch": runtime.GOARCH, "APIVersion": "1.43",
			}
			if format != "" {
				return printTemplate(cmd.OutOrStdout(), format, map[string]any{"Client": v})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Client:\n Version:    %s\n Go version: %s\n OS/Arch:    %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format output with a Go template or 'json'")
	return cmd
}

// systemInfo is what `hull info` reports, with Docker's key names.
type systemInfo struct {
	ServerVersion     string
	Driver            string
	DriverStatus      [][2]string
	CgroupVersion     string
	CgroupDriver      string
	DockerRootDir     string
	RunRoot           string
	Images            int
	Containers        int
	KernelVersion     string
	OperatingSystem   string
	OSType            string
	Architecture      string
	NCPU              int
	MemTotal          int64
	Name              string
	DefaultRuntime    string
	SecurityOptions   []string
	LoggingDriver     string
	ContainersRunning int
	ContainersPaused  int
	ContainersStopped int
}

func newInfoCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Display system-wide information",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore()
			if err != nil {
				return err
			}
			info := systemInfo{
				ServerVersion: version, Driver: s.Layers.Driver(), CgroupDriver: "cgroupfs",
				DockerRootDir: s.Root(), RunRoot: global.runroot, OSType: "linux",
				NCPU: runtime.NumCPU(), DefaultRuntime: "hull-runc", LoggingDriver: "json-file",
				SecurityOptions: []string{"name=seccomp,profile=builtin"},
			}
			switch cgroups.DetectMode() {
			case cgroups.Unified:
				info.CgroupVersion = "2"
			case cgroups.Hybrid:
				info.CgroupVersion = "1 (hybrid: cgroup2 mounted beside the v1 controllers)"
			default:
				info.CgroupVersion = "1"
			}
			var st unix.Statfs_t
			if unix.Statfs(s.Root(), &st) == nil {
				info.DriverStatus = append(info.DriverStatus, [2]string{"Backing Filesystem", fsName(st.Type)})
			}
			err = s.DB.View(func(tx *meta.Tx) error {
				images, err := tx.Images()
				info.Images = len(images)
				if err != nil {
					return err
				}
				rfs, err := tx.Rootfses()
				for _, r := range rfs {
					if !r.ReadOnly { // image mounts are not containers
						info.Containers++
					}
				}
				return err
			})
			if err != nil {
				return err
			}
			var uts unix.Utsname
			if unix.Uname(&uts) == nil {
				info.KernelVersion = unix.ByteSliceToString(uts.Release[:])
				info.Architecture = unix.ByteSliceToString(uts.Machine[:])
				info.Name = unix.ByteSliceToString(uts.Nodename[:])
			}
			info.OperatingSystem = osName()
			var si unix.Sysinfo_t
			if unix.Sysinfo(&si) == nil {
				info.MemTotal = int64(si.Totalram) * int64(si.Unit)
			}
			if format != "" {
				v, err := toJSONValue(info)
				if err != nil {
					return err
				}
				return printTemplate(cmd.OutOrStdout(), format, v)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Client:\n Version:    %s\n\n", version)
			fmt.Fprintf(w, "Server:\n Containers: %d\n Images: %d\n Server Version: %s\n", info.Containers, info.Images, info.ServerVersion)
			fmt.Fprintf(w, " Storage Driver: %s\n", info.Driver)
			for _, kv := range info.DriverStatus {
				fmt.Fprintf(w, "  %s: %s\n", kv[0], kv[1])
			}
			fmt.Fprintf(w, " Logging Driver: %s\n Cgroup Driver: %s\n Cgroup Version: %s\n", info.LoggingDriver, info.CgroupDriver, info.CgroupVersion)
			fmt.Fprintf(w, " Default Runtime: %s\n Kernel Version: %s\n Operating System: %s\n OSType: %s\n Architecture: %s\n CPUs: %d\n Total Memory: %s\n Name: %s\n",
				info.DefaultRuntime, info.KernelVersion, info.OperatingSystem, info.OSType, info.Architecture, info.NCPU, humanBinary(info.MemTotal), info.Name)
			fmt.Fprintf(w, " Hull Root Dir: %s\n Run Root: %s\n", info.DockerRootDir, info.RunRoot)
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format output with a Go template or 'json'")
	return cmd
}

func humanBinary(n int64) string {
	const gib = 1 << 30
	return fmt.Sprintf("%.2fGiB", float64(n)/gib)
}

func fsName(t int64) string {
	switch t {
	case unix.EXT4_SUPER_MAGIC:
		return "extfs"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	}
	return fmt.Sprintf("0x%x", t)
}

func osName() string {
	raw, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "Linux"
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

func newSystemCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "system",
		Short: "Manage hull",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newDfCmd(), newSystemPruneCmd(), newInfoCmd(), newCheckCmd())
	return cmd
}

func newDfCmd() *cobra.Command {
	var format string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "df",
		Short: "Show hull disk usage",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore()
			if err != nil {
				return err
			}
			du, err := s.DiskUsage()
			if err != nil {
				return err
			}
			reclaim := func(r, total int64) string {
				if total == 0 {
					return "0B (0%)"
				}
				return fmt.Sprintf("%s (%d%%)", humanSize(r), r*100/total)
			}
			t := &table{format: format, headers: map[string]string{
				"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE",
			}}
			t.add(map[string]any{"Type": "Images", "TotalCount": fmt.Sprint(du.Images), "Active": fmt.Sprint(du.ActiveImages),
				"Size": humanSize(du.ImagesSize), "Reclaimable": reclaim(du.ImagesReclaimable, du.ImagesSize)})
			running := 0
			if e, err := openEngine(); err == nil {
				if list, err := e.List(); err == nil {
					for _, c := range list {
						if e.State(c).Running {
							running++
						}
					}
				}
			}
			t.add(map[string]any{"Type": "Containers", "TotalCount": fmt.Sprint(du.Containers), "Active": fmt.Sprint(running),
				"Size": humanSize(du.ContainersSize), "Reclaimable": reclaim(du.ContainersSize, du.ContainersSize)})
			volRow := map[string]any{"Type": "Local Volumes", "TotalCount": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B"}
			if e, err := openEngine(); err == nil {
				if vols, err := e.Volumes(); err == nil {
					used := map[string]bool{}
					if list, err := e.List(); err == nil {
						for _, c := range list {
							for _, m := range c.Host.Mounts {
								if m.Type == "volume" {
									used[m.Name] = true
								}
							}
						}
					}
					var total, free int64
					active := 0
					for _, v := range vols {
						n := imageDirSize(v.Mountpoint)
						total += n
						if used[v.Name] {
							active++
						} else {
							free += n
						}
					}
					volRow = map[string]any{"Type": "Local Volumes", "TotalCount": fmt.Sprint(len(vols)), "Active": fmt.Sprint(active),
						"Size": humanSize(total), "Reclaimable": reclaim(free, total)}
				}
			}
			t.add(volRow)
			t.add(map[string]any{"Type": "Build Cache", "TotalCount": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B"})
			return t.print(cmd.OutOrStdout(), "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}")
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "format output with a Go template, 'table …' or 'json'")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "show detailed information on space usage")
	return cmd
}

func newSystemPruneCmd() *cobra.Command {
	var all, force, volumes bool
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused data",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			images := "  - all dangling images"
			if all {
				images = "  - all images without at least one container associated to them"
			}
			vols := ""
			if volumes {
				vols = "  - all anonymous volumes not used by at least one container\n"
			}
			warning := "WARNING! This will remove:\n  - all stopped containers\n" + vols + images + "\n  - unreferenced blobs and layers left by interrupted operations\n"
			if !force && !confirm(cmd, warning) {
				return nil
			}
			e, err := openEngine()
			if err != nil {
				return err
			}
			removed, err := e.Prune()
			printDeleted(cmd.OutOrStdout(), "Deleted Containers:", removed)
			if err != nil {
				return err
			}
			if volumes {
				names, _, err := e.VolumePrune(false)
				printDeleted(cmd.OutOrStdout(), "Deleted Volumes:", names)
				if err != nil {
					return err
				}
			}
			return pruneImages(cmd, all, true, "")
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove all unused images, not just dangling ones")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	cmd.Flags().BoolVar(&volumes, "volumes", false, "prune volumes")
	return cmd
}

func newCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Verify every blob's digest and the consistency of the image store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore()
			if err != nil {
				return err
			}
			problems, err := s.Check()
			if err != nil {
				return err
			}
			for _, p := range problems {
				fmt.Fprintln(cmd.OutOrStdout(), p)
			}
			if len(problems) > 0 {
				return fmt.Errorf("%d problems found in %s", len(problems), s.Root())
			}
			return nil
		},
	}
}
