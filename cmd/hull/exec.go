package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/engine"
	"github.com/hullproject/hull/image"
	"github.com/hullproject/hull/internal/console"
	"github.com/hullproject/hull/runtime/container"
)

func imageDirSize(dir string) int64 { return image.DirSize(dir) }

func newExecCmd() *cobra.Command {
	var o engine.ExecOptions
	var detach, interactive, tty bool
	var envs []string
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Execute a command in a running container",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := openEngine()
			if err != nil {
				return err
			}
			c, err := e.Resolve(args[0])
			if err != nil {
				return err
			}
			if st := e.State(c); !st.Running || st.Paused {
				if st.Paused {
					return fmt.Errorf("container %s is paused, unpause the container before exec", c.ID[:12])
				}
				return fmt.Errorf("container %s is not running", c.ID[:12])
			}
			o.Cmd, o.Tty, o.Env = args[1:], tty, envs
			p, err := e.ExecProcess(c, o)
			if err != nil {
				return err
			}
			ctr, err := e.RuntimeContainer(c)
			if err != nil {
				return err
			}
			eo := container.ExecOpts{Process: p}
			var proxy *console.Proxy
			if tty && !detach {
				if !isTerminal(os.Stdin) {
					return errors.New("the input device is not a TTY")
				}
				if proxy, err = console.New(); err != nil {
					return err
				}
				defer proxy.Close()
				eo.ConsoleConn = proxy.Remote
			} else if !detach {
				eo.Stdio = container.Stdio{Out: os.Stdout, Err: os.Stderr}
				if interactive {
					eo.Stdio.In = os.Stdin
				}
			}
			sigs := make(chan os.Signal, 16)
			if !detach {
				signal.Notify(sigs, console.ForwardedSignals...)
			}
			pid, err := ctr.Exec(eo)
			if err != nil {
				var ee *container.ExecError
				if errors.As(err, &ee) {
					code := 126
					if ee.NotFound() {
						code = 127
					}
					return &exitError{code: code, err: err}
				}
				return err
			}
			if detach {
				return nil
			}
			if proxy != nil {
				if err := proxy.Attach(); err != nil {
					return err
				}
			}
			if code := console.WaitForwarding(pid, sigs, proxy); code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	f.BoolVarP(&detach, "detach", "d", false, "detached mode: run command in the background")
	f.BoolVarP(&interactive, "interactive", "i", false, "keep STDIN open even if not attached")
	f.BoolVarP(&tty, "tty", "t", false, "allocate a pseudo-TTY")
	f.StringArrayVarP(&envs, "env", "e", nil, "set environment variables")
	f.StringVarP(&o.User, "user", "u", "", "username or UID (format: <name|uid>[:<group|gid>])")
	f.StringVarP(&o.WorkingDir, "workdir", "w", "", "working directory inside the container")
	f.BoolVar(&o.Privileged, "privileged", false, "give extended privileges to the command")
	return cmd
}

// attachContainer copies a detached container's output (from its monitor's
// attach socket, in Docker's stream framing) to our stdout and stderr, and
// with interactive our stdin to it, until the container exits; then it
// returns the exit code.
func attachContainer(cmd *cobra.Command, e *engine.Engine, c *engine.Container, interactive bool) (int, error) {
	conn, err := dialAttach(filepath.Join(e.RunRoot, "containers", c.ID))
	if err != nil {
		return 0, fmt.Errorf("attach %s: the container is not running with a monitor: %w", c.ID[:12], err)
	}
	defer conn.Close()
	if interactive {
		go func() {
			io.Copy(conn, cmd.InOrStdin())
			if uc, ok := conn.(*net.UnixConn); ok {
				uc.CloseWrite()
			}
		}()
	}
	hdr := make([]byte, 8)
	for {
		if _, err := io.ReadFull(conn, hdr); err != nil {
			break
		}
		n := binary.BigEndian.Uint32(hdr[4:])
		w := cmd.OutOrStdout()
		if hdr[0] == 2 {
			w = cmd.ErrOrStderr()
		}
		if _, err := io.CopyN(w, conn, int64(n)); err != nil {
			break
		}
	}
	return e.Wait(c.ID)
}

// dialAttach connects to a monitor's attach socket through a descriptor of
// its directory, so the path stays within the 108 bytes a socket address
// holds however deep the run root is.
func dialAttach(dir string) (net.Conn, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return net.Dial("unix", fmt.Sprintf("/proc/self/fd/%d/attach.sock", fd))
}

func newAttachCmd() *cobra.Command {
	var noStdin bool
	cmd := &cobra.Command{
		Use:   "attach [OPTIONS] CONTAINER",
		Short: "Attach local standard input, output, and error streams to a running container",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := openEngine()
			if err != nil {
				return err
			}
			c, err := e.Resolve(args[0])
			if err != nil {
				return err
			}
			if !e.State(c).Running {
				return errors.New("you cannot attach to a stopped container, start it first")
			}
			code, err := attachContainer(cmd, e, c, c.Config.OpenStdin && !noStdin)
			if err != nil {
				return err
			}
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&noStdin, "no-stdin", false, "do not attach STDIN")
	return cmd
}

func newVolumeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "volume",
		Short: "Manage volumes",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	var labels []string
	create := &cobra.Command{
		Use:   "create [OPTIONS] [VOLUME]",
		Short: "Create a volume",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := openEngine()
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			l := map[string]string{}
			for _, kv := range labels {
				k, v, _ := strings.Cut(kv, "=")
				l[k] = v
			}
			v, err := e.VolumeCreate(name, l)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), v.Name)
			return nil
		},
	}
	create.Flags().StringArrayVarP(&labels, "label", "l", nil, "set metadata for a volume")
	var lsQuiet bool
	var lsFormat string
	ls := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List volumes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := openEngine()
			if err != nil {
				return err
			}
			vols, err := e.Volumes()
			if err != nil {
				return err
			}
			t := &table{format: lsFormat, headers: map[string]string{"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT"}}
			for _, v := range vols {
				if lsQuiet {
					fmt.Fprintln(cmd.OutOrStdout(), v.Name)
					continue
				}
				t.add(map[string]any{"Driver": v.Driver, "Name": v.Name, "Mountpoint": v.Mountpoint})
			}
			if lsQuiet {
				return nil
			}
			return t.print(cmd.OutOrStdout(), "table {{.Driver}}\t{{.Name}}")
		},
	}
	ls.Flags().BoolVarP(&lsQuiet, "quiet", "q", false, "only display volume names")
	ls.Flags().StringVar(&lsFormat, "format", "", "format output with a Go template, 'table …' or 'json'")
	var inspFormat string
	inspect := &cobra.Command{
		Use:   "inspect [OPTIONS] VOLUME [VOLUME...]",
		Short: "Display detailed information on one or more volumes",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := openEngine()
			if err != nil {
				return err
			}
			return inspectEach(cmd, args, inspFormat, func(a string) (any, error) { return e.VolumeInspect(a) })
		},
	}
	inspect.Flags().StringVarP(&inspFormat, "format", "f", "", "format output with a Go template or 'json'")
	var rmForce bool
	rm := &cobra.Command{
		Use:     "rm [OPTIONS] VOLUME [VOLUME...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more volumes",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachArg(cmd, args, func(e *engine.Engine, a string) error { return e.VolumeRemove(a, rmForce) })
		},
	}
	rm.Flags().BoolVarP(&rmForce, "force", "f", false, "do not fail on a missing volume")
	var pruneAll, pruneForce bool
	prune := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused volumes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			warning := "WARNING! This will remove anonymous local volumes not used by at least one container."
			if pruneAll {
				warning = "WARNING! This will remove all local volumes not used by at least one container."
			}
			if !pruneForce && !confirm(cmd, warning) {
				return nil
			}
			e, err := openEngine()
			if err != nil {
				return err
			}
			removed, freed, err := e.VolumePrune(pruneAll)
			printDeleted(cmd.OutOrStdout(), "Deleted Volumes:", removed)
			fmt.Fprintln(cmd.OutOrStdout(), "Total reclaimed space:", humanSize(freed))
			return err
		},
	}
	prune.Flags().BoolVarP(&pruneAll, "all", "a", false, "remove all unused volumes, not just anonymous ones")
	prune.Flags().BoolVarP(&pruneForce, "force", "f", false, "do not prompt for confirmation")
	cmd.AddCommand(create, ls, inspect, rm, prune)
	return cmd
}

// inspectEach looks every argument up with get and prints what was found
// as inspect does (a JSON array, or each through --format); the misses
// come back as errors, after the output of the others.
func inspectEach(cmd *cobra.Command, args []string, format string, get func(string) (any, error)) error {
	var out []any
	var errs []error
	for _, a := range args {
		v, err := get(a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		jv, err := toJSONValue(v)
		if err != nil {
			return err
		}
		out = append(out, jv)
	}
	if err := printList(cmd, out, format); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// printList prints inspect-style output: a JSON array, or each item
// through a --format template.
func printList(cmd *cobra.Command, out []any, format string) error {
	if format != "" {
		for _, v := range out {
			if err := printTemplate(cmd.OutOrStdout(), format, v); err != nil {
				return err
			}
		}
		return nil
	}
	if out == nil {
		out = []any{}
	}
	b, err := jsonIndent(out)
	if err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), b)
	return nil
}

func newCpCmd() *cobra.Command {
	var archiveMode, followLink bool
	cmd := &cobra.Command{
		Use:   "cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH | SRC_PATH CONTAINER:DEST_PATH",
		Short: "Copy files/folders between a container and the local filesystem",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			split := func(s string) (string, string, bool) {
				// "/abs/path" and "./rel" are host paths even with a colon.
				if strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") {
					return "", s, false
				}
				c, p, ok := strings.Cut(s, ":")
				return c, p, ok
			}
			srcC, srcP, srcIn := split(args[0])
			dstC, dstP, dstIn := split(args[1])
			if args[0] == "-" {
				srcC, srcP, srcIn = "", "-", false
			}
			if args[1] == "-" {
				dstC, dstP, dstIn = "", "-", false
			}
			if srcIn && dstIn {
				return errors.New("copying between containers is not supported")
			}
			if !srcIn && !dstIn {
				return errors.New("must specify at least one container source")
			}
			if (srcIn && srcP == "-") || (dstIn && dstP == "-") {
				return errors.New(`"-" stands for a tar stream on the host side only`)
			}
			e, err := openEngine()
			if err != nil {
				return err
			}
			switch {
			case srcIn && dstP == "-":
				// A tar of SRC on stdout, as docker cp CONTAINER:SRC - writes.
				out := bufio.NewWriterSize(cmd.OutOrStdout(), 1<<16)
				if err := e.CopyFromTar(srcC, srcP, out); err != nil {
					return err
				}
				return out.Flush()
			case srcIn:
				return e.CopyFrom(srcC, srcP, dstP, archiveMode)
			case srcP == "-":
				return e.CopyToTar(dstC, cmd.InOrStdin(), dstP, archiveMode)
			}
			return e.CopyTo(dstC, srcP, dstP, archiveMode)
		},
	}
	cmd.Flags().BoolVarP(&archiveMode, "archive", "a", false, "archive mode (copy all uid/gid information)")
	cmd.Flags().BoolVarP(&followLink, "follow-link", "L", false, "always follow symbol link in SRC_PATH")
	return cmd
}
