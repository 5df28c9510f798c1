// Command hull-runc is an OCI runtime with runc's command line, so that
// containerd's runc shim and CRI-O's conmon can drive hull containers. It
// is a thin face over the runtime library in runtime/container.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"

	"github.com/hullproject/hull/runtime/container"
)

// version is set by the build (-ldflags "-X main.version=...").
var version = "0.1.0-dev"

type globalOpts struct {
	root          string
	log           string
	logFormat     string
	debug         bool
	systemdCgroup bool
}

var global globalOpts

// exitError carries a specific exit status up to main.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func init() {
	// Keep the main goroutine on the main thread: the runtime builds
	// containers from threads that join their namespaces and are then
	// thrown away, and the main thread cannot be thrown away.
	runtime.LockOSThread()
}

func main() {
	container.Tracef("main")
	cmd := newRootCmd()
	container.Tracef("cobra built")
	err := container.OffMainThread(cmd.Execute)
	if err == nil {
		return
	}
	var ee *exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	logError(err)
	os.Exit(1)
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "hull-runc",
		Short:         "Run OCI containers (runc-compatible command line)",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if global.logFormat != "text" && global.logFormat != "json" {
				return fmt.Errorf("unknown --log-format %q (use text or json)", global.logFormat)
			}
			if global.systemdCgroup {
				return errors.New("--systemd-cgroup is not supported by hull-runc: use the cgroupfs driver (SystemdCgroup = false in containerd, cgroup_manager = \"cgroupfs\" in CRI-O)")
			}
			container.Warn = func(format string, args ...any) { logLine("warning", fmt.Sprintf(format, args...)) }
			if global.debug {
				container.TraceTo(func(line string) { logLine("debug", line) })
			}
			return nil
		},
	}
	root.SetVersionTemplate(fmt.Sprintf("hull-runc version {{.Version}}\nspec: %s\n", specs.Version))
	f := root.PersistentFlags()
	f.StringVar(&global.root, "root", "/run/hull-runc", "directory for container state")
	f.StringVar(&global.log, "log", "", "append errors and warnings to this file")
	f.StringVar(&global.logFormat, "log-format", "text", "log format: text or json")
	f.BoolVar(&global.debug, "debug", false, "log debug information")
	f.BoolVar(&global.systemdCgroup, "systemd-cgroup", false, "use systemd to manage cgroups (not supported)")
	// Accepted for compatibility with callers that always pass them.
	f.String("criu", "criu", "path to criu (checkpoint is not supported)")
	f.String("rootless", "auto", "rootless mode (auto, true, false)")
	_ = f.MarkHidden("criu")
	_ = f.MarkHidden("rootless")
	root.AddCommand(
		newCreateCmd(), newStartCmd(), newRunCmd(), newStateCmd(), newKillCmd(),
		newDeleteCmd(), newExecCmd(), newPsCmd(), newPauseCmd(), newResumeCmd(),
		newListCmd(), newSpecCmd(), newFeaturesCmd(), newUpdateCmd(), newInitCmd(),
	)
	return root
}

// logLine writes one log record to --log (or stderr when no log is set).
func logLine(level, msg string) {
	var line string
	if global.logFormat == "json" {
		data, _ := json.Marshal(map[string]string{
			"level": level, "msg": msg, "time": time.Now().UTC().Format(time.RFC3339Nano),
		})
		line = string(data)
	} else {
		line = fmt.Sprintf("time=%q level=%s msg=%q", time.Now().UTC().Format(time.RFC3339Nano), level, msg)
	}
	if global.log == "" {
		if level == "error" {
			return // errors are printed to stderr by logError
		}
		fmt.Fprintln(os.Stderr, line)
		return
	}
	f, err := os.OpenFile(global.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, line)
		return
	}
	fmt.Fprintln(f, line)
	f.Close()
}

// logError reports a failed command: one line on stderr, and a record in
// the log file, where containerd's shim looks for it.
func logError(err error) {
	msg := strings.TrimSpace(err.Error())
	fmt.Fprintln(os.Stderr, "hull-runc: "+msg)
	if global.log != "" {
		logLine("error", msg)
	}
}

// newInitCmd exists so `hull-runc init` run by hand explains itself; the
// real init path is taken in main before cobra.
func newInitCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "init",
		Hidden: true,
		Short:  "internal: the container's init process",
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("init is started by hull-runc itself and cannot be run by hand")
		},
	}
}

func loadContainer(id string) (*container.Container, error) {
	return container.Load(global.root, id)
}

func exactArgs(n int, usage string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s: expects %s", cmd.Name(), usage)
		}
		return nil
	}
}
