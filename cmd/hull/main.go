// Command hull is hull's container engine CLI, with Docker's commands,
// flags and output. It is a thin face over the engine packages (image/,
// storage/, runtime/); no daemon runs behind it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/hullproject/hull/engine"
	"github.com/hullproject/hull/image"
	"github.com/hullproject/hull/runtime/container"
)

// version is set by the build (-ldflags "-X main.version=...").
var version = "0.1.0-dev"

// Exit codes as Docker's CLI uses them.
const (
	exitEngine = 125 // the engine (or the CLI's input) failed
)

type globalOpts struct {
	root          string
	runroot       string
	logLevel      string
	storageDriver string
}

var global globalOpts

// exitError carries a specific exit status up to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return fmt.Sprintf("exit status %d", e.code)
}

func init() {
	// Keep the main goroutine on the main thread: the runtime library
	// builds containers from threads that join their namespaces and are
	// then thrown away, and the main thread cannot be thrown away.
	runtime.LockOSThread()
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cmd := newRootCmd()
	err := container.OffMainThread(func() error { return cmd.ExecuteContext(ctx) })
	stop()
	if err == nil {
		return
	}
	var xe *engine.ExitError
	if errors.As(err, &xe) {
		fmt.Fprintln(os.Stderr, "Error:", oneLine(xe.Error()))
		os.Exit(xe.Code)
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "Error:", oneLine(ee.err.Error()))
		}
		os.Exit(ee.code)
	}
	fmt.Fprintln(os.Stderr, "Error:", oneLine(err.Error()))
	os.Exit(exitEngine)
}

// oneLine keeps an error to one line, as the issue's "clear one-line
// error" asks: multi-line errors from libraries are joined.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "hull",
		Short:         "A daemonless container engine with Docker's commands",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(global.logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: use debug, info, warn or error", global.logLevel)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
			return nil
		},
	}
	root.SetVersionTemplate("hull version {{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &exitError{code: exitEngine, err: fmt.Errorf("%w\nSee '%s --help'.", err, cmd.CommandPath())}
	})
	f := root.PersistentFlags()
	f.StringVar(&global.root, "root", envOr("HULL_ROOT", "/var/lib/hull"), "directory of hull's persistent state (env HULL_ROOT)")
	f.StringVar(&global.runroot, "runroot", envOr("HULL_RUNROOT", "/run/hull"), "directory of hull's runtime state")
	f.StringVar(&global.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	f.StringVar(&global.storageDriver, "storage-driver", os.Getenv("HULL_STORAGE_DRIVER"), "storage driver for a new store: overlay or vfs (default: overlay when the kernel has it)")

	root.AddCommand(
		newVersionCmd(), newInfoCmd(),
		newImagesCmd(), newTagCmd(), newRmiCmd(), newImportCmd(), newLoadCmd(), newSaveCmd(),
		newPullCmd(), newPushCmd(), newLoginCmd(), newLogoutCmd(), newHistoryCmd(),
		newImageCmd(), newSystemCmd(), newInspectCmd(),
		newCreateCmd(), newRunCmd(), newStartCmd(), newStopCmd("stop"), newStopCmd("restart"),
		newKillCmd(), newRmCmd(), newPauseCmd(false), newPauseCmd(true), newWaitCmd(), newLogsCmd(),
		newRenameCmd(), newPsCmd(), newExecCmd(), newTopCmd(), newPortCmd(), newAttachCmd(),
		newContainerCmd(), newVolumeCmd(), newStatsCmd(), newCpCmd(), newNetworkCmd(),
	)
	return root
}

// openStore opens the image store under --root.
func openStore() (*image.Store, error) {
	return image.Open(global.root, global.storageDriver)
}

// progressOut is where progress goes: nowhere with -q.
func progressOut(cmd *cobra.Command, quiet bool) io.Writer {
	if quiet {
		return nil
	}
	return cmd.OutOrStdout()
}

func jsonIndent(v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "    ")
	return string(b), err
}
