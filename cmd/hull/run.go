package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hullproject/hull/engine"
	"github.com/hullproject/hull/internal/console"
	"github.com/hullproject/hull/runtime/container"
)

// openEngine opens the container engine over --root and --runroot.
func openEngine() (*engine.Engine, error) {
	return engine.Open(engine.Options{Root: global.root, RunRoot: global.runroot, StorageDriver: global.storageDriver})
}

// createFlags are the flags `create` and `run` share.
type createFlags struct {
	name, workdir, user, hostname, domainname, entrypoint, restart, network string
	memory, memorySwap, memoryReservation, cpusetCpus, stopSignal, pull     string
	env, envFile, labels, volumes, mounts, tmpfs, ulimits, capAdd, capDrop  []string
	securityOpt, logOpts, expose                                            []string
	publish, aliases, dns, addHosts                                         []string
	publishAll                                                              bool
	logDriver                                                               string
	cpus                                                                    float64
	cpuShares, pidsLimit                                                    int64
	stopTimeout                                                             int
	interactive, tty, readOnly, init, privileged, rm, noHealthcheck         bool
	healthCmd                                                               string
	healthInterval, healthTimeout, healthStart                              time.Duration
	healthRetries                                                           int
}

func (f *createFlags) add(fs *pflag.FlagSet) {
	fs.SetInterspersed(false) // everything after the image is the command
	// -h is --hostname here, as in Docker; help is --help only.
	fs.Bool("help", false, "print usage")
	fs.StringVar(&f.name, "name", "", "assign a name to the container")
	fs.StringArrayVarP(&f.env, "env", "e", nil, "set environment variables")
	fs.StringArrayVar(&f.envFile, "env-file", nil, "read in a file of environment variables")
	fs.StringVarP(&f.workdir, "workdir", "w", "", "working directory inside the container")
	fs.StringVarP(&f.user, "user", "u", "", "username or UID (format: <name|uid>[:<group|gid>])")
	fs.StringVar(&f.entrypoint, "entrypoint", "", "overwrite the default ENTRYPOINT of the image")
	fs.StringVarP(&f.hostname, "hostname", "h", "", "container host name")
	fs.StringVar(&f.domainname, "domainname", "", "container NIS domain name")
	fs.StringArrayVarP(&f.labels, "label", "l", nil, "set meta data on a container")
	fs.BoolVarP(&f.interactive, "interactive", "i", false, "keep STDIN open even if not attached")
	fs.BoolVarP(&f.tty, "tty", "t", false, "allocate a pseudo-TTY")
	fs.StringVarP(&f.memory, "memory", "m", "", "memory limit")
	fs.StringVar(&f.memorySwap, "memory-swap", "", "swap limit equal to memory plus swap: '-1' to enable unlimited swap")
	fs.StringVar(&f.memoryReservation, "memory-reservation", "", "memory soft limit")
	fs.Float64Var(&f.cpus, "cpus", 0, "number of CPUs")
	fs.Int64VarP(&f.cpuShares, "cpu-shares", "c", 0, "CPU shares (relative weight)")
	fs.StringVar(&f.cpusetCpus, "cpuset-cpus", "", "CPUs in which to allow execution (0-3, 0,1)")
	fs.Int64Var(&f.pidsLimit, "pids-limit", 0, "tune container pids limit (set -1 for unlimited)")
	fs.StringArrayVar(&f.ulimits, "ulimit", nil, "ulimit options")
	fs.BoolVar(&f.readOnly, "read-only", false, "mount the container's root filesystem as read only")
	fs.StringArrayVar(&f.tmpfs, "tmpfs", nil, "mount a tmpfs directory")
	fs.StringArrayVarP(&f.volumes, "volume", "v", nil, "bind mount a volume")
	fs.StringArrayVar(&f.mounts, "mount", nil, "attach a filesystem mount to the container")
	fs.StringVar(&f.restart, "restart", "no", "restart policy to apply when a container exits")
	fs.StringVar(&f.healthCmd, "health-cmd", "", "command to run to check health")
	fs.DurationVar(&f.healthInterval, "health-interval", 0, "time between running the check (ms|s|m|h)")
	fs.DurationVar(&f.healthTimeout, "health-timeout", 0, "maximum time to allow one check to run (ms|s|m|h)")
	fs.IntVar(&f.healthRetries, "health-retries", 0, "consecutive failures needed to report unhealthy")
	fs.DurationVar(&f.healthStart, "health-start-period", 0, "start period for the container to initialize before starting health-retries countdown")
	fs.BoolVar(&f.noHealthcheck, "no-healthcheck", false, "disable any container-specified HEALTHCHECK")
	fs.BoolVar(&f.init, "init", false, "run an init inside the container that forwards signals and reaps processes")
	fs.StringVar(&f.stopSignal, "stop-signal", "", "signal to stop the container")
	fs.IntVar(&f.stopTimeout, "stop-timeout", -1, "timeout (in seconds) to stop a container")
	fs.StringArrayVar(&f.capAdd, "cap-add", nil, "add Linux capabilities")
	fs.StringArrayVar(&f.capDrop, "cap-drop", nil, "drop Linux capabilities")
	fs.BoolVar(&f.privileged, "privileged", false, "give extended privileges to this container")
	fs.StringArrayVar(&f.securityOpt, "security-opt", nil, "security options")
	fs.StringVar(&f.logDriver, "log-driver", "json-file", "logging driver for the container")
	fs.StringArrayVar(&f.logOpts, "log-opt", nil, "log driver options")
	fs.StringVar(&f.network, "network", "default", "connect a container to a network (bridge, none, host, container:NAME, or a user network)")
	fs.StringArrayVarP(&f.publish, "publish", "p", nil, "publish a container's port(s) to the host ([ip:][hostPort:]containerPort[/proto])")
	fs.BoolVarP(&f.publishAll, "publish-all", "P", false, "publish all exposed ports to random ports")
	fs.StringArrayVar(&f.aliases, "network-alias", nil, "add network-scoped alias for the container")
	fs.StringArrayVar(&f.dns, "dns", nil, "set custom DNS servers")
	fs.StringArrayVar(&f.addHosts, "add-host", nil, "add a custom host-to-IP mapping (host:ip)")
	fs.StringVar(&f.network, "net", "default", "connect a container to a network")
	fs.MarkHidden("net")
	fs.StringArrayVar(&f.expose, "expose", nil, "expose a port or a range of ports")
	fs.StringVar(&f.pull, "pull", "missing", "pull image before running (always, missing, never)")
	fs.BoolVar(&f.rm, "rm", false, "automatically remove the container when it exits")
}

// options turns the flags and the arguments (IMAGE [COMMAND] [ARG...])
// into the engine's create options, checking every value first.
func (f *createFlags) options(cmd *cobra.Command, args []string) (engine.CreateOptions, error) {
	o := engine.CreateOptions{
		Name: f.name, Image: args[0], Cmd: args[1:], WorkingDir: f.workdir, User: f.user,
		Hostname: f.hostname, Domainname: f.domainname, Tty: f.tty, OpenStdin: f.interactive,
		Expose: f.expose, HealthCmd: f.healthCmd, HealthInterval: f.healthInterval,
		HealthTimeout: f.healthTimeout, HealthRetries: f.healthRetries, HealthStart: f.healthStart,
		NoHealthcheck: f.noHealthcheck, StopSignal: f.stopSignal, Volumes: f.volumes,
		MountSpecs: f.mounts, Tmpfs: f.tmpfs, Pull: f.pull, PullOutput: cmd.ErrOrStderr(),
		Publish: f.publish, PublishAll: f.publishAll, Aliases: f.aliases, DNS: f.dns, AddHosts: f.addHosts,
		Context: cmd.Context(),
	}
	if cmd.Flags().Changed("entrypoint") {
		o.Entrypoint = &f.entrypoint
	}
	if f.stopTimeout >= 0 && cmd.Flags().Changed("stop-timeout") {
		t := f.stopTimeout
		o.StopTimeout = &t
	}
	for _, file := range f.envFile {
		env, err := readEnvFile(file)
		if err != nil {
			return o, err
		}
		o.Env = append(o.Env, env...)
	}
	o.Env = append(o.Env, f.env...)
	o.Labels = map[string]string{}
	for _, l := range f.labels {
		k, v, _ := strings.Cut(l, "=")
		if k == "" {
			return o, fmt.Errorf("invalid label %q", l)
		}
		o.Labels[k] = v
	}
	h := &o.Host
	var err error
	size := func(flag, v string) (int64, error) {
		if v == "" {
			return 0, nil
		}
		if v == "-1" && flag == "memory-swap" {
			return -1, nil
		}
		n, err := units.RAMInBytes(v)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("invalid argument %q for \"--%s\" flag: invalid size: '%s'", v, flag, v)
		}
		return n, nil
	}
	if h.Memory, err = size("memory", f.memory); err != nil {
		return o, err
	}
	if h.MemorySwap, err = size("memory-swap", f.memorySwap); err != nil {
		return o, err
	}
	if h.MemoryReservation, err = size("memory-reservation", f.memoryReservation); err != nil {
		return o, err
	}
	if f.cpus < 0 {
		return o, fmt.Errorf("invalid argument \"%v\" for \"--cpus\" flag: range of CPUs is from 0.01 to the number of CPUs available", f.cpus)
	}
	h.NanoCpus = int64(f.cpus * 1e9)
	h.CPUShares = f.cpuShares
	if f.cpuShares < 0 {
		return o, fmt.Errorf("invalid --cpu-shares %d", f.cpuShares)
	}
	h.CpusetCpus = f.cpusetCpus
	if cmd.Flags().Changed("pids-limit") {
		p := f.pidsLimit
		h.PidsLimit = &p
	}
	for _, u := range f.ulimits {
		ul, err := units.ParseUlimit(u)
		if err != nil {
			return o, fmt.Errorf("invalid --ulimit %q: %w", u, err)
		}
		h.Ulimits = append(h.Ulimits, engine.Ulimit{Name: ul.Name, Soft: ul.Soft, Hard: ul.Hard})
	}
	h.ReadonlyRootfs, h.Init, h.Privileged, h.AutoRemove = f.readOnly, f.init, f.privileged, f.rm
	h.CapAdd, h.CapDrop, h.SecurityOpt = f.capAdd, f.capDrop, f.securityOpt
	h.NetworkMode = f.network
	name, count, _ := strings.Cut(f.restart, ":")
	h.RestartPolicy.Name = name
	if count != "" {
		n, err := strconv.Atoi(count)
		if err != nil {
			return o, fmt.Errorf("invalid restart policy %q: maximum retry count must be an integer", f.restart)
		}
		h.RestartPolicy.MaximumRetryCount = n
	}
	h.LogConfig = engine.LogConfig{Type: f.logDriver, Config: map[string]string{}}
	for _, lo := range f.logOpts {
		k, v, ok := strings.Cut(lo, "=")
		if !ok {
			return o, fmt.Errorf("invalid --log-opt %q: expected key=value", lo)
		}
		h.LogConfig.Config[k] = v
	}
	return o, nil
}

// readEnvFile reads KEY=VALUE lines; # comments and blank lines are
// skipped; a bare KEY takes the caller's value.
func readEnvFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open env file: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimLeft(sc.Text(), " \t")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, _, ok := strings.Cut(line, "="); ok {
			if strings.ContainsAny(k, " \t") {
				return nil, fmt.Errorf("env file %s: variable %q contains whitespace", path, k)
			}
			out = append(out, line)
		} else if v, ok := os.LookupEnv(line); ok {
			out = append(out, line+"="+v)
		}
	}
	return out, sc.Err()
}

func newCreateCmd() *cobra.Command {
	var f createFlags
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create a new container",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options(cmd, args)
			if err != nil {
				return err
			}
			e, err := openEngine()
			if err != nil {
				return err
			}
			c, err := e.Create(o)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), c.ID)
			return nil
		},
	}
	f.add(cmd.Flags())
	return cmd
}

func newRunCmd() *cobra.Command {
	var f createFlags
	var detach bool
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create and run a new container from an image",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options(cmd, args)
			if err != nil {
				return err
			}
			if detach && f.rm && o.Host.RestartPolicy.Name != "" && o.Host.RestartPolicy.Name != "no" {
				return errors.New("conflicting options: --restart and --rm")
			}
			if f.tty && !detach {
				if !isTerminal(os.Stdin) {
					return errors.New("the input device is not a TTY")
				}
			}
			e, err := openEngine()
			if err != nil {
				return err
			}
			c, err := e.Create(o)
			if err != nil {
				return err
			}
			if detach {
				if _, err := e.Start(c.ID); err != nil {
					if f.rm {
						e.Remove(c.ID, true, true)
					}
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), c.ID)
				return nil
			}
			sigs := make(chan os.Signal, 16)
			signal.Notify(sigs, console.ForwardedSignals...)
			code, err := e.RunForeground(c, engine.RunOptions{
				Stdin: cmd.InOrStdin(), Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr(),
				Interactive: f.interactive, Signals: sigs,
			})
			if f.rm {
				if rerr := e.Remove(c.ID, true, true); rerr != nil && err == nil {
					err = rerr
				}
				container.Tracef("engine: removed")
			}
			if err != nil {
				return err
			}
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	f.add(cmd.Flags())
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "run container in background and print container ID")
	return cmd
}
