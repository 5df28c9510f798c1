package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hullproject/hull/image"
	"github.com/hullproject/hull/internal/console"
	"github.com/hullproject/hull/internal/progress"
	"github.com/hullproject/hull/network"
	"github.com/hullproject/hull/storage/meta"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
)

// CreateOptions are what `create` and `run` take from the command line.
type CreateOptions struct {
	Name  string
	Image string
	// Cmd replaces the image's Cmd when set.
	Cmd []string
	// Entrypoint replaces the image's when not nil ("" clears it).
	Entrypoint *string
	Env        []string
	WorkingDir string
	User       string
	Hostname   string
	Domainname string
	Labels     map[string]string
	Tty        bool
	OpenStdin  bool
	Expose     []string

	HealthCmd      string
	HealthInterval time.Duration
	HealthTimeout  time.Duration
	HealthRetries  int
	HealthStart    time.Duration
	NoHealthcheck  bool
	StopSignal     string
	StopTimeout    *int

	Host HostConfig
	// Volumes are -v arguments, MountSpecs --mount ones, Tmpfs --tmpfs ones.
	Volumes    []string
	MountSpecs []string
	Tmpfs      []string

	// Publish are -p arguments; PublishAll is -P.
	Publish    []string
	PublishAll bool
	// Aliases are --network-alias names, DNS --dns servers, AddHosts
	// --add-host host:ip entries.
	Aliases  []string
	DNS      []string
	AddHosts []string

	// Context ends a pull (Ctrl-C); nil is no end.
	Context context.Context

	// Pull is missing (default), always or never.
	Pull       string
	PullOutput io.Writer
}

// Create makes a container: its record, its writable root filesystem and
// its volumes. Nothing runs yet. On failure nothing is left behind.
func (e *Engine) Create(o CreateOptions) (c *Container, err error) {
	img, err := e.imageFor(o)
	if err != nil {
		return nil, err
	}
	cfg, err := e.Images.Config(img)
	if err != nil {
		return nil, err
	}
	c = &Container{ID: newID(), Name: strings.TrimPrefix(o.Name, "/"), Image: o.Image, ImageID: img.ID, Created: time.Now().UTC()}
	if err := e.fillConfig(c, cfg, &o); err != nil {
		return nil, err
	}
	if c.Name == "" {
		c.Name = randomName()
	} else if !validName.MatchString(c.Name) {
		return nil, fmt.Errorf("invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", c.Name)
	}
	c.LogPath = filepath.Join(e.containerDir(c.ID), c.ID+"-json.log")
	id := c.ID // the undo steps run after c, the named result, is nil

	// Undo, newest first, whatever was made before a failure.
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	if _, err := e.Images.Layers.CreateRootfs(c.ID, img.ID, img.TopLayer()); err != nil {
		return nil, err
	}
	undo = append(undo, func() { e.Images.Layers.RemoveRootfs(id) })
	for i := range c.Host.Mounts {
		m := &c.Host.Mounts[i]
		if m.Type != "volume" {
			continue
		}
		anonymous := m.Name == ""
		v, err := e.volumeCreate(m.Name, nil, anonymous)
		if err != nil {
			return nil, err
		}
		m.Name, m.Source = v.Name, v.Mountpoint
		if anonymous {
			name := v.Name
			undo = append(undo, func() { e.VolumeRemove(name, true) })
		}
	}
	if err := os.MkdirAll(e.containerDir(c.ID), 0o700); err != nil {
		return nil, err
	}
	undo = append(undo, func() { os.RemoveAll(e.containerDir(id)) })
	c.State = State{Status: "created"}
	err = e.DB().Update(func(tx *meta.Tx) error {
		if tx.RecordExists(meta.ContainerNames, c.Name) {
			var other string
			tx.Record(meta.ContainerNames, c.Name, &other)
			return fmt.Errorf("%w: the container name \"/%s\" is already in use by container \"%s\". You have to remove (or rename) that container to be able to reuse that name", ErrConflict, c.Name, other)
		}
		if err := tx.PutRecord(meta.ContainerNames, c.Name, c.ID); err != nil {
			return err
		}
		return saveRecord(tx, c)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// imageFor finds the image to run, pulling it as --pull says.
func (e *Engine) imageFor(o CreateOptions) (*meta.Image, error) {
	pull := o.Pull
	if pull == "" {
		pull = "missing"
	}
	if pull != "missing" && pull != "always" && pull != "never" {
		return nil, fmt.Errorf("invalid --pull %q: missing, always or never", pull)
	}
	if pull != "always" {
		img, err := e.Images.Resolve(o.Image)
		if err == nil || pull == "never" || !errors.Is(err, image.ErrNotFound) {
			if err != nil {
				return nil, fmt.Errorf("unable to find image '%s' locally", o.Image)
			}
			return img, nil
		}
	}
	ref, err := image.ParseReference(o.Image)
	if err != nil {
		return nil, err
	}
	if o.PullOutput != nil {
		fmt.Fprintf(o.PullOutput, "Unable to find image '%s' locally\n", ref.Familiar())
	}
	ctx := o.Context
	if ctx == nil {
		ctx = context.Background()
	}
	res, err := e.Images.Pull(ctx, o.Image, image.RemoteOptions{}, progress.New(o.PullOutput))
	if err != nil {
		return nil, err
	}
	return res.Image, nil
}

// fillConfig merges the image's config and the options, with Docker's
// rules for Entrypoint and Cmd.
func (e *Engine) fillConfig(c *Container, img *dockerspec.DockerOCIImage, o *CreateOptions) error {
	ic := img.Config
	cfg := Config{
		Image: o.Image, Tty: o.Tty, OpenStdin: o.OpenStdin, AttachStdin: o.OpenStdin,
		Env: append([]string(nil), ic.Env...), WorkingDir: ic.WorkingDir, User: ic.User,
		Labels: map[string]string{}, Volumes: map[string]struct{}{}, StopSignal: ic.StopSignal,
		StopTimeout: o.StopTimeout, Domainname: o.Domainname,
	}
	for k, v := range ic.Labels {
		cfg.Labels[k] = v
	}
	for k, v := range o.Labels {
		cfg.Labels[k] = v
	}
	for _, kv := range o.Env {
		k, v, ok := strings.Cut(kv, "=")
		if k == "" {
			return fmt.Errorf("invalid environment variable: %q", kv)
		}
		if !ok {
			// "-e NAME" passes the caller's value, as Docker does.
			val, set := os.LookupEnv(k)
			if !set {
				continue
			}
			v = val
		}
		cfg.Env = setEnv(cfg.Env, k, v)
	}
	// --entrypoint resets the image's Cmd too.
	cfg.Entrypoint, cfg.Cmd = ic.Entrypoint, ic.Cmd
	if o.Entrypoint != nil {
		cfg.Entrypoint, cfg.Cmd = nil, nil
		if *o.Entrypoint != "" {
			cfg.Entrypoint = []string{*o.Entrypoint}
		}
	}
	if len(o.Cmd) > 0 {
		cfg.Cmd = o.Cmd
	}
	args := append(append([]string(nil), cfg.Entrypoint...), cfg.Cmd...)
	if len(args) == 0 {
		return errors.New("no command specified")
	}
	c.Path, c.Args = args[0], args[1:]
	if o.WorkingDir != "" {
		if !strings.HasPrefix(o.WorkingDir, "/") {
			return fmt.Errorf("the working directory '%s' is invalid, it needs to be an absolute path", o.WorkingDir)
		}
		cfg.WorkingDir = o.WorkingDir
	}
	if o.User != "" {
		cfg.User = o.User
	}
	cfg.Hostname = o.Hostname
	if cfg.Hostname == "" {
		cfg.Hostname = c.ID[:12]
	}
	if o.Host.NetworkMode == "host" && o.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	cfg.ExposedPorts = map[string]struct{}{}
	for p := range ic.ExposedPorts {
		cfg.ExposedPorts[p] = struct{}{}
	}
	for _, p := range o.Expose {
		if !strings.Contains(p, "/") {
			p += "/tcp"
		}
		cfg.ExposedPorts[p] = struct{}{}
	}
	if o.StopSignal != "" {
		cfg.StopSignal = o.StopSignal
	}
	if cfg.StopSignal != "" {
		if _, err := console.ParseSignal(cfg.StopSignal); err != nil {
			return fmt.Errorf("invalid stop signal %q", cfg.StopSignal)
		}
	}
	// Health: the image's, replaced or tuned by the flags.
	hc := ic.Healthcheck
	if o.NoHealthcheck {
		hc = &dockerspec.HealthcheckConfig{Test: []string{"NONE"}}
	} else if o.HealthCmd != "" || o.HealthInterval != 0 || o.HealthTimeout != 0 || o.HealthRetries != 0 || o.HealthStart != 0 {
		n := dockerspec.HealthcheckConfig{}
		if hc != nil {
			n = *hc
		}
		if o.HealthCmd != "" {
			n.Test = []string{"CMD-SHELL", o.HealthCmd}
		}
		for _, d := range []time.Duration{o.HealthInterval, o.HealthTimeout, o.HealthStart} {
			if d < 0 {
				return fmt.Errorf("health check durations must not be negative")
			}
		}
		if o.HealthRetries < 0 {
			return fmt.Errorf("--health-retries must not be negative")
		}
		if o.HealthInterval != 0 {
			n.Interval = o.HealthInterval
		}
		if o.HealthTimeout != 0 {
			n.Timeout = o.HealthTimeout
		}
		if o.HealthRetries != 0 {
			n.Retries = o.HealthRetries
		}
		if o.HealthStart != 0 {
			n.StartPeriod = o.HealthStart
		}
		if len(n.Test) == 0 {
			return fmt.Errorf("health check flags need --health-cmd or an image HEALTHCHECK")
		}
		hc = &n
	}
	if hc != nil && len(hc.Test) > 0 && hc.Test[0] != "NONE" {
		cfg.Healthcheck = hc
	}
	c.Config = cfg

	h := o.Host
	if err := validateSecurityOpts(h.SecurityOpt); err != nil {
		return err
	}
	if h.NetworkMode == "" || h.NetworkMode == "default" {
		h.NetworkMode = network.DefaultName
	}
	switch {
	case h.NetworkMode == "none", h.NetworkMode == "host":
	case strings.HasPrefix(h.NetworkMode, "container:"):
		if _, err := e.Resolve(strings.TrimPrefix(h.NetworkMode, "container:")); err != nil {
			return err
		}
	default:
		n, err := e.Networks().Get(h.NetworkMode)
		if err != nil {
			return fmt.Errorf("network %s not found", h.NetworkMode)
		}
		h.NetworkMode = n.Name
	}
	if len(o.Aliases) > 0 && (!usesBridge(h.NetworkMode) || h.NetworkMode == network.DefaultName) {
		return errors.New("network-scoped aliases are only supported for user-defined networks")
	}
	c.Aliases = o.Aliases
	for _, d := range o.DNS {
		if net.ParseIP(d) == nil {
			return fmt.Errorf("invalid --dns %q: not an IP address", d)
		}
	}
	h.DNS = o.DNS
	for _, a := range o.AddHosts {
		host, ip, ok := strings.Cut(a, ":")
		if !ok || host == "" || net.ParseIP(ip) == nil {
			return fmt.Errorf("invalid --add-host %q: expected host:ip", a)
		}
	}
	h.ExtraHosts = o.AddHosts
	for _, p := range o.Publish {
		b, err := network.ParsePublish(p)
		if err != nil {
			return err
		}
		h.PortBindings = append(h.PortBindings, b...)
	}
	h.PublishAllPorts = o.PublishAll
	if o.PublishAll {
		var exposed []string
		for p := range c.Config.ExposedPorts {
			exposed = append(exposed, p)
		}
		sort.Strings(exposed)
		for _, p := range exposed {
			b, err := network.ParsePublish(p)
			if err != nil {
				return err
			}
			h.PortBindings = append(h.PortBindings, b...)
		}
	}
	if len(h.PortBindings) > 0 && !usesBridge(h.NetworkMode) {
		// Docker ignores published ports outside bridge networks.
		h.PortBindings = nil
	}
	if err := validateRestart(h.RestartPolicy); err != nil {
		return err
	}
	if h.AutoRemove && h.RestartPolicy.Name != "" && h.RestartPolicy.Name != "no" {
		return errors.New("conflicting options: --restart and --rm")
	}
	if h.LogConfig.Type == "" {
		h.LogConfig.Type = "json-file"
	}
	if h.LogConfig.Type != "json-file" && h.LogConfig.Type != "none" {
		return fmt.Errorf("log driver %q is not supported (json-file or none)", h.LogConfig.Type)
	}
	for k := range h.LogConfig.Config {
		if k != "max-size" && k != "max-file" {
			return fmt.Errorf("unknown log opt '%s' for json-file log driver", k)
		}
	}
	for _, v := range o.Volumes {
		m, err := ParseVolume(v)
		if err != nil {
			return err
		}
		h.Mounts = append(h.Mounts, m)
	}
	for _, v := range o.MountSpecs {
		m, err := ParseMount(v)
		if err != nil {
			return err
		}
		h.Mounts = append(h.Mounts, m)
	}
	h.Tmpfs = map[string]string{}
	for _, t := range o.Tmpfs {
		dst, opts, _ := strings.Cut(t, ":")
		if !strings.HasPrefix(dst, "/") {
			return fmt.Errorf("invalid --tmpfs %q: the path must be absolute", t)
		}
		h.Tmpfs[dst] = opts
		m := Mount{Type: "tmpfs", Destination: dst}
		if opts != "" {
			m.Options = strings.Split(opts, ",")
		}
		h.Mounts = append(h.Mounts, m)
	}
	// The image's VOLUMEs become anonymous volumes unless something is
	// mounted there already.
	var imageVols []string
	for v := range ic.Volumes {
		imageVols = append(imageVols, v)
	}
	sort.Strings(imageVols)
	for _, v := range imageVols {
		cfg.Volumes[v] = struct{}{}
		taken := false
		for _, m := range h.Mounts {
			if m.Destination == v {
				taken = true
			}
		}
		if !taken {
			h.Mounts = append(h.Mounts, Mount{Type: "volume", Destination: v})
		}
	}
	for i, m := range h.Mounts {
		if m.Type == "bind" {
			abs, err := filepath.Abs(m.Source)
			if err != nil {
				return err
			}
			if _, err := os.Stat(abs); err != nil {
				return fmt.Errorf("invalid mount config for type \"bind\": bind source path does not exist: %s", abs)
			}
			h.Mounts[i].Source = abs
			h.Binds = append(h.Binds, abs+":"+m.Destination)
		}
		for j := 0; j < i; j++ {
			if h.Mounts[j].Destination == m.Destination {
				return fmt.Errorf("duplicate mount point: %s", m.Destination)
			}
		}
	}
	if h.MemorySwap > 0 && h.Memory > 0 && h.MemorySwap < h.Memory {
		return errors.New("minimum memoryswap limit should be larger than memory limit, see usage")
	}
	if h.MemorySwap > 0 && h.Memory == 0 {
		return errors.New("you should always set the memory limit when using memoryswap limit, see usage")
	}
	if h.Memory != 0 && h.Memory < 6*1024*1024 {
		return errors.New("minimum memory limit allowed is 6MB")
	}
	if h.NanoCpus < 0 {
		return errors.New("range of CPUs is from 0.01 to the number of CPUs available")
	}
	c.Config = cfg
	c.Host = h
	return nil
}

func validateRestart(p RestartPolicy) error {
	switch p.Name {
	case "", "no", "always", "unless-stopped":
		if p.MaximumRetryCount != 0 {
			return fmt.Errorf("maximum retry count cannot be used with restart policy '%s'", p.Name)
		}
	case "on-failure":
		if p.MaximumRetryCount < 0 {
			return errors.New("invalid restart policy: maximum retry count cannot be negative")
		}
	default:
		return fmt.Errorf("invalid restart policy '%s'", p.Name)
	}
	return nil
}

var nameLeft = []string{
	"brave", "calm", "clever", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lively",
	"merry", "nimble", "proud", "quiet", "quick", "sharp", "steady", "swift", "tidy", "witty",
}

var nameRight = []string{
	"anchor", "beacon", "compass", "dock", "ferry", "galley", "harbor", "helm", "jetty", "keel",
	"lantern", "mast", "oar", "pier", "rudder", "sail", "schooner", "tide", "voyage", "wharf",
}

// randomName makes a Docker-style name: adjective_noun plus a number, so
// names rarely collide.
func randomName() string {
	id := newID()
	a := int(id[0]) % len(nameLeft)
	b := int(id[1]) % len(nameRight)
	return fmt.Sprintf("%s_%s_%s", nameLeft[a], nameRight[b], id[2:6])
}
