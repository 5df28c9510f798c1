package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"

	"github.com/hullproject/hull/internal/console"
	"github.com/hullproject/hull/runtime/container"
)

type execFlags struct {
	process, pidFile, consoleSocket, cwd, user string
	detach, tty, noNewPrivs                    bool
	env, caps, addGids                         []string
	preserveFDs                                int
}

func newExecCmd() *cobra.Command {
	var ef execFlags
	cmd := &cobra.Command{
		Use:   "exec [flags] ID [COMMAND [ARG...]]",
		Short: "Run a process in a running container",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return execProcess(args[0], args[1:], &ef, cmd.Flags().Changed("tty"))
		},
	}
	// Everything after the ID belongs to the command.
	cmd.Flags().SetInterspersed(false)
	f := cmd.Flags()
	f.StringVarP(&ef.process, "process", "p", "", "path to a process.json (OCI process object)")
	f.BoolVarP(&ef.detach, "detach", "d", false, "do not wait for the process")
	f.StringVar(&ef.pidFile, "pid-file", "", "write the process's pid to this file")
	f.BoolVarP(&ef.tty, "tty", "t", false, "allocate a pseudo-terminal")
	f.StringVar(&ef.consoleSocket, "console-socket", "", "unix socket to receive the pty master")
	f.StringArrayVarP(&ef.env, "env", "e", nil, "set an environment variable (KEY=VALUE)")
	f.StringVar(&ef.cwd, "cwd", "", "working directory inside the container")
	f.StringVarP(&ef.user, "user", "u", "", "UID[:GID] to run as")
	f.StringArrayVarP(&ef.addGids, "additional-gids", "g", nil, "additional group ids")
	f.StringArrayVarP(&ef.caps, "cap", "c", nil, "add a capability")
	f.BoolVar(&ef.noNewPrivs, "no-new-privs", false, "set no_new_privs")
	f.IntVar(&ef.preserveFDs, "preserve-fds", 0, "pass this many extra descriptors (from 3)")
	f.String("apparmor", "", "AppArmor profile (not supported; ignored when empty)")
	f.String("process-label", "", "SELinux label (not supported; ignored when empty)")
	f.Bool("ignore-paused", false, "accepted for compatibility")
	return cmd
}

// buildProcess makes the process to run: process.json, or the container's
// own process with the command line and flags applied, as runc does.
func buildProcess(c *container.Container, cmdArgs []string, ef *execFlags, ttyChanged bool) (*specs.Process, error) {
	var p specs.Process
	if ef.process != "" {
		data, err := os.ReadFile(ef.process)
		if err != nil {
			return nil, fmt.Errorf("read process file: %w", err)
		}
		if err := json.Unmarshal(data, &p); err != nil {
			return nil, fmt.Errorf("parse process file %s: %w", ef.process, err)
		}
	} else {
		if len(cmdArgs) == 0 {
			return nil, errors.New("exec: give a command or --process")
		}
		if base := c.Spec().Process; base != nil {
			p = *base
			p.Env = append([]string(nil), base.Env...)
		}
		p.Args = cmdArgs
		p.Terminal = false
	}
	if ttyChanged {
		p.Terminal = ef.tty
	}
	p.Env = append(p.Env, ef.env...)
	if ef.cwd != "" {
		p.Cwd = ef.cwd
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	if ef.user != "" {
		uid, gid, err := parseUser(ef.user)
		if err != nil {
			return nil, err
		}
		p.User.UID, p.User.GID = uid, gid
	}
	for _, g := range ef.addGids {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("invalid additional gid %q", g)
		}
		p.User.AdditionalGids = append(p.User.AdditionalGids, uint32(n))
	}
	if len(ef.caps) > 0 {
		if p.Capabilities == nil {
			p.Capabilities = &specs.LinuxCapabilities{}
		} else {
			cp := *p.Capabilities
			p.Capabilities = &cp
		}
		for _, name := range ef.caps {
			c := p.Capabilities
			c.Bounding = append(c.Bounding, name)
			c.Effective = append(c.Effective, name)
			c.Permitted = append(c.Permitted, name)
		}
	}
	if ef.noNewPrivs {
		p.NoNewPrivileges = true
	}
	return &p, nil
}

func parseUser(s string) (uint32, uint32, error) {
	u, g, hasGroup := strings.Cut(s, ":")
	uid, err := strconv.ParseUint(u, 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("invalid --user %q: want UID[:GID] as numbers", s)
	}
	gid := uint64(0)
	if hasGroup {
		if gid, err = strconv.ParseUint(g, 10, 32); err != nil {
			return 0, 0, fmt.Errorf("invalid --user %q: want UID[:GID] as numbers", s)
		}
	}
	return uint32(uid), uint32(gid), nil
}

func execProcess(id string, cmdArgs []string, ef *execFlags, ttyChanged bool) error {
	c, err := loadContainer(id)
	if err != nil {
		return err
	}
	p, err := buildProcess(c, cmdArgs, ef, ttyChanged)
	if err != nil {
		return err
	}
	o := container.ExecOpts{
		Process: p, ConsoleSocket: ef.consoleSocket, PreserveFDs: ef.preserveFDs,
		Stdio: container.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr},
	}
	var tty *console.Proxy
	if p.Terminal && ef.consoleSocket == "" {
		if ef.detach {
			return errors.New("exec --detach with a terminal needs --console-socket")
		}
		if tty, err = console.New(); err != nil {
			return err
		}
		o.ConsoleConn = tty.Remote
		defer tty.Close()
	}
	sigs := make(chan os.Signal, 64)
	if !ef.detach {
		signal.Notify(sigs, console.ForwardedSignals...)
	}
	pid, err := c.Exec(o)
	if err != nil {
		return err
	}
	if ef.pidFile != "" {
		if err := os.WriteFile(ef.pidFile, []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("write pid file: %w", err)
		}
	}
	if ef.detach {
		return nil
	}
	if tty != nil {
		if err := tty.Attach(); err != nil {
			return err
		}
	}
	if code := console.WaitForwarding(pid, sigs, tty); code != 0 {
		return &exitError{code: code}
	}
	return nil
}
