package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/internal/console"
	"github.com/hullproject/hull/runtime/container"
)

type createFlags struct {
	bundle, pidFile, consoleSocket string
	noPivot, noNewKeyring          bool
	preserveFDs                    int
}

func (c *createFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&c.bundle, "bundle", "b", ".", "path to the OCI bundle")
	f.StringVar(&c.pidFile, "pid-file", "", "write the init's pid to this file")
	f.StringVar(&c.consoleSocket, "console-socket", "", "unix socket to receive the pty master of the container's terminal")
	f.BoolVar(&c.noPivot, "no-pivot", false, "move the rootfs with MS_MOVE and chroot instead of pivot_root")
	f.BoolVar(&c.noNewKeyring, "no-new-keyring", false, "do not create a new session keyring")
	f.IntVar(&c.preserveFDs, "preserve-fds", 0, "pass this many extra descriptors (from 3) to the container")
}

func (c *createFlags) opts() container.CreateOpts {
	n := c.preserveFDs
	var env []string
	// systemd socket activation: the listening sockets (fds 3...) go to
	// the container, whose process is told about them as systemd would.
	if lf, err := strconv.Atoi(os.Getenv("LISTEN_FDS")); err == nil && lf > 0 {
		n = max(n, lf)
		env = []string{"LISTEN_FDS=" + strconv.Itoa(lf), "LISTEN_PID=1"}
	}
	return container.CreateOpts{
		Bundle: c.bundle, PidFile: c.pidFile, ConsoleSocket: c.consoleSocket,
		NoPivot: c.noPivot, NoNewKeyring: c.noNewKeyring, PreserveFDs: n, ExtraEnv: env,
		Stdio: container.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr},
	}
}

func newCreateCmd() *cobra.Command {
	var cf createFlags
	cmd := &cobra.Command{
		Use:   "create [flags] ID",
		Short: "Create a container; its init waits for `start`",
		Args:  exactArgs(1, "exactly one container ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := container.Create(global.root, args[0], cf.opts())
			return err
		},
	}
	cf.register(cmd)
	return cmd
}

func newStartCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "start ID",
		Short: "Start a created container",
		Args:  exactArgs(1, "exactly one container ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadContainer(args[0])
			if err != nil {
				return err
			}
			return c.Start()
		},
	}
}

func newRunCmd() *cobra.Command {
	var cf createFlags
	var detach bool
	cmd := &cobra.Command{
		Use:   "run [flags] ID",
		Short: "Create and start a container, and wait for it unless detached",
		Args:  exactArgs(1, "exactly one container ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runContainer(args[0], cf, detach)
		},
	}
	cf.register(cmd)
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "do not wait for the container")
	return cmd
}

func runContainer(id string, cf createFlags, detach bool) error {
	o := cf.opts()
	var tty *console.Proxy
	if !detach && o.ConsoleSocket == "" {
		// Used only if the spec asks for a terminal.
		var err error
		if tty, err = console.New(); err != nil {
			return err
		}
		o.ConsoleConn = tty.Remote
		defer tty.Close()
	}
	// Forward signals from the moment the container exists. Registering
	// takes a while in Go, so it overlaps with creating the container.
	// They are never unregistered (see console.ForwardedSignals).
	sigs := make(chan os.Signal, 64)
	if !detach {
		go signal.Notify(sigs, console.ForwardedSignals...)
	}
	c, err := container.Create(global.root, id, o)
	if err != nil {
		return err
	}
	if p := c.Spec().Process; tty != nil && (p == nil || !p.Terminal) {
		tty.Close()
		tty = nil
	}
	if err := c.Start(); err != nil {
		_ = c.Delete(true)
		return err
	}
	if detach {
		return nil
	}
	if tty != nil {
		if err := tty.Attach(); err != nil {
			_ = c.Delete(true)
			return err
		}
	}
	code := console.WaitForwarding(c.State.Pid, sigs, tty)
	if err := c.Delete(true); err != nil {
		logError(err)
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// stateJSON is `state`'s output: the OCI state plus runc's extra fields,
// which tools such as containerd read.
type stateJSON struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func toStateJSON(c *container.Container) stateJSON {
	st := c.OCIState()
	owner := "root"
	if c.State.Owner != "" && c.State.Owner != "0" {
		owner = c.State.Owner
	}
	return stateJSON{
		OCIVersion: st.Version, ID: st.ID, Pid: st.Pid, Status: string(st.Status), Bundle: st.Bundle,
		Rootfs: c.State.Rootfs, Created: c.State.Created, Owner: owner, Annotations: st.Annotations,
	}
}

func newStateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "state ID",
		Short: "Print a container's state as JSON",
		Args:  exactArgs(1, "exactly one container ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadContainer(args[0])
			if err != nil {
				return err
			}
			data, err := json.MarshalIndent(toStateJSON(c), "", "  ")
			if err != nil {
				return err
			}
			fmt.Println(string(data))
			return nil
		},
	}
}

func newKillCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "kill [--all] ID [SIGNAL]",
		Short: "Send a signal (default TERM) to a container's init, or to all its processes",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return errors.New("kill: expects a container ID and an optional signal")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			sig := unix.SIGTERM
			if len(args) == 2 {
				var err error
				if sig, err = console.ParseSignal(args[1]); err != nil {
					return err
				}
			}
			c, err := loadContainer(args[0])
			if err != nil {
				return err
			}
			return c.Signal(sig, all)
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "signal every process in the container")
	return cmd
}

func newDeleteCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "delete [--force] ID...",
		Short: "Delete containers (killing a running one only with --force)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var errs []error
			for _, id := range args {
				c, err := loadContainer(id)
				if err != nil {
					if force && errors.Is(err, container.ErrNotExist) {
						continue
					}
					errs = append(errs, err)
					continue
				}
				if err := c.Delete(force); err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill a running container first")
	return cmd
}

func newPauseCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "pause ID",
		Short: "Freeze every process of a container",
		Args:  exactArgs(1, "exactly one container ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadContainer(args[0])
			if err != nil {
				return err
			}
			return c.Pause()
		},
	}
}

func newResumeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "resume ID",
		Short: "Thaw a paused container",
		Args:  exactArgs(1, "exactly one container ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadContainer(args[0])
			if err != nil {
				return err
			}
			return c.Resume()
		},
	}
}

func newListCmd() *cobra.Command {
	var format string
	var quiet bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List containers",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := container.List(global.root)
			if err != nil {
				return err
			}
			if quiet {
				for _, c := range cs {
					fmt.Println(c.ID())
				}
				return nil
			}
			var states []stateJSON
			for _, c := range cs {
				states = append(states, toStateJSON(c))
			}
			switch format {
			case "json":
				if states == nil {
					states = []stateJSON{}
				}
				return json.NewEncoder(os.Stdout).Encode(states)
			case "table":
				w := tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)
				fmt.Fprintln(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER")
				for _, s := range states {
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.Pid, s.Status, s.Bundle,
						s.Created.Format(time.RFC3339Nano), s.Owner)
				}
				return w.Flush()
			}
			return fmt.Errorf("unknown --format %q (use table or json)", format)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "table", "table or json")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only container IDs")
	return cmd
}
