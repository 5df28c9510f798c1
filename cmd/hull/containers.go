package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/hullproject/hull/engine"
	"github.com/hullproject/hull/engine/logs"
	"github.com/hullproject/hull/internal/proc"
)

// eachArg runs fn for every argument, printing the argument on success as
// Docker does, and joins the errors.
func eachArg(cmd *cobra.Command, args []string, fn func(*engine.Engine, string) error) error {
	e, err := openEngine()
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range args {
		if err := fn(e, a); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintln(cmd.OutOrStdout(), a)
	}
	return errors.Join(errs...)
}

func newStartCmd() *cobra.Command {
	var attach, interactive, all bool
	var filters []string
	cmd := &cobra.Command{
		Use:   "start [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Start one or more stopped containers",
		Args: func(cmd *cobra.Command, args []string) error {
			if all {
				return cobra.NoArgs(cmd, args)
			}
			if len(filters) > 0 {
				return errors.New("--filter goes with --all")
			}
			return cobra.MinimumNArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if all {
				if attach {
					return errors.New("--all cannot be used with --attach")
				}
				return startAll(cmd, filters)
			}
			if attach {
				if len(args) != 1 {
					return errors.New("you cannot start and attach multiple containers at once")
				}
				e, err := openEngine()
				if err != nil {
					return err
				}
				c, err := e.Start(args[0])
				if err != nil {
					return err
				}
				code, err := attachContainer(cmd, e, c, interactive)
				if err != nil {
					return err
				}
				if code != 0 {
					return &exitError{code: code}
				}
				return nil
			}
			return eachArg(cmd, args, func(e *engine.Engine, a string) error { _, err := e.Start(a); return err })
		},
	}
	cmd.Flags().BoolVarP(&attach, "attach", "a", false, "attach STDOUT/STDERR and forward signals")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "attach container's STDIN")
	cmd.Flags().BoolVar(&all, "all", false, "start every container that is not running (as podman start --all)")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "with --all: only containers matching (ps filters, and restart-policy=)")
	return cmd
}

// startAll starts every container that is not running and matches the
// filters, as podman start --all does; `start --all --filter
// restart-policy=always` at boot brings back what a daemon would restart
// (contrib/systemd/hull-restart.service). It prints each started container
// and fails, after trying them all, if one did not start.
func startAll(cmd *cobra.Command, filters []string) error {
	e, err := openEngine()
	if err != nil {
		return err
	}
	match, err := containerFilters(e, filters)
	if err != nil {
		return err
	}
	list, err := e.List()
	if err != nil {
		return err
	}
	var failed []string
	for _, c := range list {
		st := e.State(c)
		if st.Running || st.Paused || st.Restarting || !match(c, st) {
			continue
		}
		if _, err := e.Start(c.ID); err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s: %v\n", c.Name, err)
			failed = append(failed, c.Name)
			continue
		}
		fmt.Fprintln(cmd.OutOrStdout(), c.Name)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d container(s) did not start: %s", len(failed), strings.Join(failed, ", "))
	}
	return nil
}

func newStopCmd(use string) *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   use + " [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Stop one or more running containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var t *int
			if cmd.Flags().Changed("time") {
				t = &timeout
			}
			return eachArg(cmd, args, func(e *engine.Engine, a string) error {
				if err := e.Stop(a, t); err != nil {
					return err
				}
				if use == "restart" {
					_, err := e.Start(a)
					return err
				}
				return nil
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait before killing the container")
	if use == "restart" {
		cmd.Short = "Restart one or more containers"
	}
	return cmd
}

func newKillCmd() *cobra.Command {
	var sig string
	cmd := &cobra.Command{
		Use:   "kill [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Kill one or more running containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachArg(cmd, args, func(e *engine.Engine, a string) error { return e.Kill(a, sig) })
		},
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "KILL", "signal to send to the container")
	return cmd
}

func newRmCmd() *cobra.Command {
	var force, volumes bool
	cmd := &cobra.Command{
		Use:   "rm [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Remove one or more containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachArg(cmd, args, func(e *engine.Engine, a string) error { return e.Remove(a, force, volumes) })
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "force the removal of a running container (uses SIGKILL)")
	cmd.Flags().BoolVarP(&volumes, "volumes", "v", false, "remove anonymous volumes associated with the container")
	return cmd
}

func newPauseCmd(unpause bool) *cobra.Command {
	use, short := "pause", "Pause all processes within one or more containers"
	if unpause {
		use, short = "unpause", "Unpause all processes within one or more containers"
	}
	return &cobra.Command{
		Use:   use + " CONTAINER [CONTAINER...]",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachArg(cmd, args, func(e *engine.Engine, a string) error {
				if unpause {
					return e.Unpause(a)
				}
				return e.Pause(a)
			})
		},
	}
}

func newWaitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "wait CONTAINER [CONTAINER...]",
		Short: "Block until one or more containers stop, then print their exit codes",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := openEngine()
			if err != nil {
				return err
			}
			var errs []error
			for _, a := range args {
				code, err := e.Wait(a)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), code)
			}
			return errors.Join(errs...)
		},
	}
}

func newRenameCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rename CONTAINER NEW_NAME",
		Short: "Rename a container",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := openEngine()
			if err != nil {
				return err
			}
			return e.Rename(args[0], args[1])
		},
	}
}

// statusText is the STATUS column of ps: "Up 3 minutes (healthy)",
// "Exited (0) 2 seconds ago", "Created".
func statusText(st engine.State) string {
	switch st.Status {
	case "running", "paused":
		s := "Up " + units.HumanDuration(time.Since(st.StartedAt))
		if st.Paused {
			s += " (Paused)"
		} else if st.Health != nil {
			if st.Health.Status == "starting" {
				s += " (health: starting)"
			} else {
				s += " (" + st.Health.Status + ")"
			}
		}
		return s
	case "restarting":
		return fmt.Sprintf("Restarting (%d) %s ago", st.ExitCode, units.HumanDuration(time.Since(st.FinishedAt)))
	case "exited":
		if st.FinishedAt.IsZero() {
			return fmt.Sprintf("Exited (%d)", st.ExitCode)
		}
		return fmt.Sprintf("Exited (%d) %s ago", st.ExitCode, units.HumanDuration(time.Since(st.FinishedAt)))
	case "created":
		return "Created"
	}
	return st.Status
}

func newPsCmd() *cobra.Command {
	var all, quiet, noTrunc, size, latest bool
	var last int
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use:     "ps [OPTIONS]",
		Aliases: []string{"ls", "list"},
		Short:   "List containers",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := openEngine()
			if err != nil {
				return err
			}
			list, err := e.List()
			if err != nil {
				return err
			}
			match, err := containerFilters(e, filters)
			if err != nil {
				return err
			}
			sort.Slice(list, func(i, j int) bool { return list[i].Created.After(list[j].Created) })
			if latest {
				last = 1
			}
			t := &table{format: format, headers: map[string]string{
				"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
				"RunningFor": "CREATED", "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES",
				"Size": "SIZE", "Labels": "LABELS", "Mounts": "MOUNTS", "State": "STATE", "Networks": "NETWORKS",
			}}
			n := 0
			for _, c := range list {
				st := e.State(c)
				if !all && last <= 0 && !st.Running && !hasStatusFilter(filters) {
					continue
				}
				if !match(c, st) {
					continue
				}
				if last > 0 && n >= last {
					break
				}
				n++
				id := c.ID
				command := strings.Join(append([]string{c.Path}, c.Args...), " ")
				if !noTrunc {
					id = id[:12]
					if len(command) > 20 {
						command = command[:19] + "…"
					}
				}
				var labels []string
				for k, v := range c.Config.Labels {
					labels = append(labels, k+"="+v)
				}
				sort.Strings(labels)
				var mounts []string
				for _, m := range c.Host.Mounts {
					if m.Name != "" {
						mounts = append(mounts, m.Name)
					} else {
						mounts = append(mounts, m.Source)
					}
				}
				row := map[string]any{
					"ID": id, "Image": c.Image, "Command": strconv.Quote(command),
					"CreatedAt":  c.Created.Local().Format("2006-01-02 15:04:05 -0700 MST"),
					"RunningFor": since(c.Created), "Status": statusText(st), "State": st.Status,
					"Ports": map[bool]string{true: portsText(c), false: ""}[st.Running], "Names": c.Name, "Labels": strings.Join(labels, ","),
					"Mounts": strings.Join(mounts, ","), "Networks": c.Host.NetworkMode, "Size": "",
				}
				if size {
					if up, err := e.Images.Layers.UpperDir(c.ID); err == nil {
						row["Size"] = humanSize(dirBytes(up))
					}
				}
				t.add(row)
			}
			if quiet {
				for _, r := range t.rows {
					fmt.Fprintln(cmd.OutOrStdout(), r["ID"])
				}
				return nil
			}
			def := "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
			if size {
				def += "\t{{.Size}}"
			}
			return t.print(cmd.OutOrStdout(), def)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&all, "all", "a", false, "show all containers (default shows just running)")
	f.BoolVarP(&quiet, "quiet", "q", false, "only display container IDs")
	f.BoolVar(&noTrunc, "no-trunc", false, "don't truncate output")
	f.BoolVarP(&size, "size", "s", false, "display total file sizes")
	f.BoolVarP(&latest, "latest", "l", false, "show the latest created container (includes all states)")
	f.IntVarP(&last, "last", "n", -1, "show n last created containers (includes all states)")
	f.StringVar(&format, "format", "", "format output with a Go template, 'table …' or 'json'")
	f.StringArrayVarP(&filters, "filter", "f", nil, "filter output (status=, name=, label=, ancestor=, health=, id=, exited=)")
	return cmd
}

func dirBytes(dir string) int64 { return imageDirSize(dir) }

// hasStatusFilter: as in Docker, a status filter lists stopped containers
// without -a; other filters do not.
func hasStatusFilter(filters []string) bool {
	for _, f := range filters {
		if strings.HasPrefix(f, "status=") || strings.HasPrefix(f, "exited=") {
			return true
		}
	}
	return false
}

// containerFilters builds the ps --filter predicate.
func containerFilters(e *engine.Engine, specs []string) (func(*engine.Container, engine.State) bool, error) {
	type pred func(*engine.Container, engine.State) bool
	byKey := map[string][]pred{}
	for _, s := range specs {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("bad format of filter (expected name=value): %q", s)
		}
		var p pred
		switch k {
		case "status":
			valid := map[string]bool{"created": true, "restarting": true, "running": true, "removing": true, "paused": true, "exited": true, "dead": true}
			if !valid[v] {
				return nil, fmt.Errorf("invalid filter 'status=%s'", v)
			}
			p = func(_ *engine.Container, st engine.State) bool { return st.Status == v }
		case "name":
			p = func(c *engine.Container, _ engine.State) bool {
				return strings.Contains(c.Name, strings.TrimPrefix(v, "/"))
			}
		case "id":
			p = func(c *engine.Container, _ engine.State) bool { return strings.HasPrefix(c.ID, v) }
		case "label":
			lk, lv, hasV := strings.Cut(v, "=")
			p = func(c *engine.Container, _ engine.State) bool {
				got, ok := c.Config.Labels[lk]
				return ok && (!hasV || got == lv)
			}
		case "ancestor":
			img, err := e.Images.Resolve(v)
			p = func(c *engine.Container, _ engine.State) bool {
				if err == nil && c.ImageID == img.ID {
					return true
				}
				m, _ := path.Match(v, c.Image)
				return m || c.Image == v
			}
		case "health":
			if v != "starting" && v != "healthy" && v != "unhealthy" && v != "none" {
				return nil, fmt.Errorf("invalid filter 'health=%s'", v)
			}
			p = func(_ *engine.Container, st engine.State) bool {
				if st.Health == nil {
					return v == "none"
				}
				return st.Health.Status == v
			}
		case "restart-policy":
			// Podman's filter; "no" also matches an unset policy.
			valid := map[string]bool{"no": true, "always": true, "on-failure": true, "unless-stopped": true}
			if !valid[v] {
				return nil, fmt.Errorf("invalid filter 'restart-policy=%s' (no, always, on-failure or unless-stopped)", v)
			}
			p = func(c *engine.Container, _ engine.State) bool {
				name := c.Host.RestartPolicy.Name
				if name == "" {
					name = "no"
				}
				return name == v
			}
		case "exited":
			code, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("invalid filter 'exited=%s'", v)
			}
			p = func(_ *engine.Container, st engine.State) bool { return st.Status == "exited" && st.ExitCode == code }
		default:
			return nil, fmt.Errorf("invalid filter %q", k)
		}
		byKey[k] = append(byKey[k], p)
	}
	// Docker: values of one key are alternatives, keys must all match.
	return func(c *engine.Container, st engine.State) bool {
		for _, preds := range byKey {
			ok := false
			for _, p := range preds {
				if p(c, st) {
					ok = true
					break
				}
			}
			if !ok {
				return false
			}
		}
		return true
	}, nil
}

func newLogsCmd() *cobra.Command {
	var follow, timestamps, details bool
	var sinceS, untilS, tail string
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] CONTAINER",
		Short: "Fetch the logs of a container",
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
			if c.Host.LogConfig.Type == "none" {
				return errors.New(`configured logging driver does not support reading`)
			}
			now := time.Now()
			o := logs.ReadOptions{Tail: -1}
			if o.Since, err = logs.ParseTime(sinceS, now); err != nil {
				return err
			}
			if o.Until, err = logs.ParseTime(untilS, now); err != nil {
				return err
			}
			if tail != "all" && tail != "" {
				n, err := strconv.Atoi(tail)
				if err != nil {
					return fmt.Errorf("invalid --tail %q", tail)
				}
				if n >= 0 {
					o.Tail = n
				}
			}
			offset := logs.Size(c.LogPath)
			entries, err := logs.Read(c.LogPath, o)
			if err != nil {
				return err
			}
			print := func(en logs.Entry) {
				w := cmd.OutOrStdout()
				if en.Stream == "stderr" {
					w = cmd.ErrOrStderr()
				}
				if timestamps {
					fmt.Fprint(w, en.Time.UTC().Format("2006-01-02T15:04:05.000000000Z")+" ")
				}
				fmt.Fprint(w, en.Log)
			}
			for _, en := range entries {
				print(en)
			}
			if !follow {
				return nil
			}
			out := make(chan logs.Entry, 64)
			stop := make(chan struct{})
			done := make(chan error, 1)
			go func() { done <- logs.Follow(c.LogPath, offset, logs.ReadOptions{Until: o.Until, Tail: -1}, out, stop) }()
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case en := <-out:
					print(en)
				case err := <-done:
					return err
				case <-cmd.Context().Done():
					close(stop)
					return nil
				case <-tick.C:
					// Follow ends with the container.
					if cur, err := e.Resolve(c.ID); err != nil || !e.State(cur).Running && !e.State(cur).Restarting {
						time.Sleep(150 * time.Millisecond)
						for {
							select {
							case en := <-out:
								print(en)
								continue
							default:
							}
							break
						}
						close(stop)
						return nil
					}
				}
			}
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow log output")
	cmd.Flags().BoolVarP(&timestamps, "timestamps", "t", false, "show timestamps")
	cmd.Flags().BoolVar(&details, "details", false, "show extra details provided to logs")
	cmd.Flags().StringVar(&sinceS, "since", "", "show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)")
	cmd.Flags().StringVar(&untilS, "until", "", "show logs before a timestamp or relative")
	cmd.Flags().StringVarP(&tail, "tail", "n", "all", "number of lines to show from the end of the logs")
	return cmd
}

func newContainerPruneCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove all stopped containers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !force && !confirm(cmd, "WARNING! This will remove all stopped containers.") {
				return nil
			}
			e, err := openEngine()
			if err != nil {
				return err
			}
			removed, err := e.Prune()
			printDeleted(cmd.OutOrStdout(), "Deleted Containers:", removed)
			fmt.Fprintln(cmd.OutOrStdout(), "Total reclaimed space: 0B")
			return err
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	return cmd
}

func newContainerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "container",
		Short: "Manage containers",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	ls := newPsCmd()
	ls.Use, ls.Aliases = "ls [OPTIONS]", []string{"list", "ps"}
	cleanup := &cobra.Command{
		Use:    "cleanup CONTAINER",
		Short:  "Clean up after a stopped container (run by its monitor)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := openEngine()
			if err != nil {
				return err
			}
			return e.Cleanup(args[0])
		},
	}
	cmd.AddCommand(cleanup)
	cmd.AddCommand(ls, newCreateCmd(), newRunCmd(), newStartCmd(), newStopCmd("stop"), newStopCmd("restart"),
		newKillCmd(), newRmCmd(), newPauseCmd(false), newPauseCmd(true), newWaitCmd(), newLogsCmd(),
		newRenameCmd(), newContainerPruneCmd(), newContainerInspectCmd(), newExecCmd(), newTopCmd(), newPortCmd())
	return cmd
}

// containerInspect is a container as `docker container inspect` shows it.
func containerInspect(e *engine.Engine, c *engine.Container) map[string]any {
	st := e.State(c)
	runDir := e.RunRoot + "/containers/" + c.ID
	mounts := []map[string]any{}
	for _, m := range c.Host.Mounts {
		mounts = append(mounts, map[string]any{
			"Type": m.Type, "Name": m.Name, "Source": m.Source, "Destination": m.Destination,
			"Driver": map[bool]string{true: "local", false: ""}[m.Type == "volume"],
			"Mode":   "", "RW": !m.ReadOnly, "Propagation": "",
		})
	}
	cfg := c.Config
	hc := c.Host
	if st.Health == nil && cfg.Healthcheck != nil && st.Running {
		st.Health = &engine.Health{Status: "starting", Log: []engine.HealthProbe{}}
	}
	graph := map[string]any{"Name": e.Images.Layers.Driver(), "Data": map[string]string{}}
	if up, err := e.Images.Layers.UpperDir(c.ID); err == nil {
		graph["Data"] = map[string]string{"UpperDir": up, "MergedDir": strings.TrimSuffix(up, "upper") + "merged", "WorkDir": strings.TrimSuffix(up, "upper") + "work"}
	}
	return map[string]any{
		"Id": c.ID, "Created": c.Created.Format(time.RFC3339Nano), "Path": c.Path, "Args": nonNil(c.Args),
		"State": map[string]any{
			"Status": st.Status, "Running": st.Running, "Paused": st.Paused, "Restarting": st.Restarting,
			"OOMKilled": st.OOMKilled, "Dead": st.Dead, "Pid": st.Pid, "ExitCode": st.ExitCode, "Error": st.Error,
			"StartedAt": zeroTime(st.StartedAt), "FinishedAt": zeroTime(st.FinishedAt), "Health": st.Health,
		},
		"Image": c.ImageID.String(), "ResolvConfPath": runDir + "/resolv.conf", "HostnamePath": runDir + "/hostname",
		"HostsPath": runDir + "/hosts", "LogPath": c.LogPath, "Name": "/" + c.Name, "RestartCount": e.RestartCount(c),
		"Driver": e.Images.Layers.Driver(), "Platform": "linux", "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
		"ExecIDs": nil, "HostConfig": hc, "GraphDriver": graph, "Mounts": mounts, "Config": cfg,
		"NetworkSettings": networkSettings(c, st.Running),
	}
}

// networkSettings is inspect's NetworkSettings: the networks with their
// addresses, the published ports, and for the default network the
// top-level fields Docker keeps there.
func networkSettings(c *engine.Container, running bool) map[string]any {
	nets := map[string]any{}
	ports := map[string]any{}
	out := map[string]any{"Networks": nets, "Ports": ports, "SandboxKey": "", "IPAddress": "", "Gateway": "", "MacAddress": "", "IPPrefixLen": 0}
	if !running {
		return out
	}
	out["SandboxKey"] = c.Net.SandboxKey
	for name, ep := range c.Net.Networks {
		nets[name] = ep
		if name == "bridge" {
			out["IPAddress"], out["Gateway"], out["MacAddress"], out["IPPrefixLen"] = ep.IPAddress, ep.Gateway, ep.MacAddress, ep.IPPrefixLen
		}
	}
	for k, b := range c.Net.Ports {
		ports[k] = b
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// zeroTime prints an unset time as Docker does.
func zeroTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func newContainerInspectCmd() *cobra.Command {
	var format string
	var size bool
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Display detailed information on one or more containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return inspectObjects(cmd, args, format, "container")
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format output with a Go template or 'json'")
	cmd.Flags().BoolVarP(&size, "size", "s", false, "display total file sizes")
	return cmd
}

// inspectObjects prints containers and/or images (typ "", "container",
// "image"), as `docker inspect` does: containers first, then images.
func inspectObjects(cmd *cobra.Command, args []string, format, typ string) error {
	e, err := openEngine()
	if err != nil {
		return err
	}
	return inspectEach(cmd, args, format, func(a string) (any, error) {
		if typ == "" || typ == "container" {
			if c, err := e.Resolve(a); err == nil {
				return containerInspect(e, c), nil
			}
		}
		if typ == "" || typ == "image" {
			if ins, err := e.Images.Inspect(a); err == nil {
				return ins, nil
			}
		}
		what := "object"
		if typ != "" {
			what = typ
		}
		return nil, fmt.Errorf("no such %s: %s", what, a)
	})
}

// printDeleted prints a prune's list under its title, as Docker does.
func printDeleted(w io.Writer, title string, items []string) {
	if len(items) == 0 {
		return
	}
	fmt.Fprintln(w, title)
	for _, it := range items {
		fmt.Fprintln(w, it)
	}
	fmt.Fprintln(w)
}

func newTopCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "top CONTAINER [ps OPTIONS]",
		Short: "Display the running processes of a container",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := openEngine()
			if err != nil {
				return err
			}
			pids, err := e.Processes(args[0])
			if err != nil {
				return err
			}
			t := &table{headers: map[string]string{"UID": "UID", "PID": "PID", "PPID": "PPID", "C": "C", "STIME": "STIME", "TTY": "TTY", "TIME": "TIME", "CMD": "CMD"}}
			boot := bootTime()
			for _, pid := range pids {
				t.add(procRow(pid, boot))
			}
			return t.print(cmd.OutOrStdout(), "table {{.UID}}\t{{.PID}}\t{{.PPID}}\t{{.C}}\t{{.STIME}}\t{{.TTY}}\t{{.TIME}}\t{{.CMD}}")
		},
	}
}

// procRow reads what `ps -ef` shows of a process from /proc: user (by the
// host's names, as Docker's top shows them), pid, ppid, CPU %, start time
// (boot is when the machine booted), terminal, CPU time and command line.
func procRow(pid int, boot time.Time) map[string]any {
	row := map[string]any{"UID": "?", "PID": strconv.Itoa(pid), "PPID": "?", "C": "0", "STIME": "?", "TTY": "?", "TIME": "00:00:00", "CMD": "?"}
	base := "/proc/" + strconv.Itoa(pid)
	if raw, err := os.ReadFile(base + "/cmdline"); err == nil && len(raw) > 0 {
		row["CMD"] = strings.TrimSpace(strings.ReplaceAll(string(raw), "\x00", " "))
	}
	if raw, err := os.ReadFile(base + "/status"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(line, "Uid:"); ok {
				if f := strings.Fields(v); len(f) > 0 {
					row["UID"] = f[0]
					if u, err := user.LookupId(f[0]); err == nil {
						row["UID"] = u.Username
					}
				}
			}
		}
	}
	st, err := proc.ReadStat(pid)
	if err != nil {
		return row
	}
	const ticks = 100 // USER_HZ on Linux
	row["PPID"] = strconv.Itoa(st.PPid)
	if st.TTY != 0 {
		major, minor := (st.TTY>>8)&0xfff, (st.TTY&0xff)|((st.TTY>>12)&0xfff00)
		if major == 136 {
			row["TTY"] = fmt.Sprintf("pts/%d", minor)
		} else {
			row["TTY"] = fmt.Sprintf("%d:%d", major, minor)
		}
	}
	cpu := (st.UTime + st.STime) / ticks
	row["TIME"] = fmt.Sprintf("%02d:%02d:%02d", cpu/3600, cpu/60%60, cpu%60)
	if !boot.IsZero() {
		started := boot.Add(time.Duration(st.StartTime) * time.Second / ticks)
		if elapsed := time.Since(started).Seconds(); elapsed > 0 {
			row["C"] = strconv.Itoa(int(float64(st.UTime+st.STime) / ticks / elapsed * 100))
		}
		// As ps: the time when it started today, else the day.
		if now := time.Now(); started.Year() == now.Year() && started.YearDay() == now.YearDay() {
			row["STIME"] = started.Format("15:04")
		} else {
			row["STIME"] = started.Format("Jan02")
		}
	}
	return row
}

// bootTime is when the machine booted (btime in /proc/stat).
func bootTime() time.Time {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				return time.Unix(n, 0)
			}
		}
	}
	return time.Time{}
}

func newPortCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "port CONTAINER [PRIVATE_PORT[/PROTO]]",
		Short: "List port mappings or a specific mapping for the container",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := openEngine()
			if err != nil {
				return err
			}
			c, err := e.Resolve(args[0])
			if err != nil {
				return err
			}
			want := ""
			if len(args) == 2 {
				want = args[1]
				if !strings.Contains(want, "/") {
					want += "/tcp"
				}
			}
			var keys []string
			for k := range c.Net.Ports {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			found := false
			for _, k := range keys {
				if want != "" && k != want {
					continue
				}
				for _, b := range c.Net.Ports[k] {
					found = true
					if want != "" {
						fmt.Fprintf(cmd.OutOrStdout(), "%s:%s\n", b.HostIP, b.HostPort)
					} else {
						fmt.Fprintf(cmd.OutOrStdout(), "%s -> %s:%s\n", k, b.HostIP, b.HostPort)
					}
				}
			}
			if want != "" && !found {
				return fmt.Errorf("no public port '%s' published for %s", args[1], args[0])
			}
			return nil
		},
	}
}

// portsText is the PORTS column of ps: "0.0.0.0:8080->80/tcp".
func portsText(c *engine.Container) string {
	var out []string
	for k, bs := range c.Net.Ports {
		for _, b := range bs {
			out = append(out, fmt.Sprintf("%s:%s->%s", b.HostIP, b.HostPort, k))
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
