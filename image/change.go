package image

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func dockerImageConfig(env, cmd []string) ocispec.ImageConfig {
	return ocispec.ImageConfig{Env: env, Cmd: cmd}
}

// ApplyChange applies one Dockerfile instruction of `import --change` to
// an image config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD,
// STOPSIGNAL, USER, VOLUME, WORKDIR, HEALTHCHECK NONE|CMD ….
func ApplyChange(c *dockerspec.DockerOCIImageConfig, change string) error {
	change = strings.TrimSpace(change)
	keyword, rest, _ := strings.Cut(change, " ")
	if keyword == "" {
		return fmt.Errorf("empty --change")
	}
	rest = strings.TrimSpace(rest)
	switch strings.ToUpper(keyword) {
	case "CMD":
		c.Cmd = commandForm(rest)
	case "ENTRYPOINT":
		c.Entrypoint = commandForm(rest)
		if rest == "" {
			c.Entrypoint = nil
		}
	case "ENV":
		pairs, err := keyValues(rest, "ENV")
		if err != nil {
			return err
		}
		for _, kv := range pairs {
			c.Env = setEnv(c.Env, kv[0], kv[1])
		}
	case "LABEL":
		pairs, err := keyValues(rest, "LABEL")
		if err != nil {
			return err
		}
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		for _, kv := range pairs {
			c.Labels[kv[0]] = kv[1]
		}
	case "EXPOSE":
		if rest == "" {
			return fmt.Errorf("EXPOSE requires at least one port")
		}
		if c.ExposedPorts == nil {
			c.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range strings.Fields(rest) {
			port, proto, _ := strings.Cut(p, "/")
			if proto == "" {
				proto = "tcp"
			}
			if proto != "tcp" && proto != "udp" && proto != "sctp" {
				return fmt.Errorf("EXPOSE %s: unknown protocol %q", p, proto)
			}
			if !validPortSpec(port) {
				return fmt.Errorf("EXPOSE %s: invalid port", p)
			}
			c.ExposedPorts[port+"/"+proto] = struct{}{}
		}
	case "VOLUME":
		var vols []string
		if strings.HasPrefix(rest, "[") {
			if err := json.Unmarshal([]byte(rest), &vols); err != nil {
				return fmt.Errorf("VOLUME %s: %w", rest, err)
			}
		} else {
			vols = strings.Fields(rest)
		}
		if len(vols) == 0 {
			return fmt.Errorf("VOLUME requires at least one path")
		}
		if c.Volumes == nil {
			c.Volumes = map[string]struct{}{}
		}
		for _, v := range vols {
			c.Volumes[v] = struct{}{}
		}
	case "USER":
		if rest == "" {
			return fmt.Errorf("USER requires a user")
		}
		c.User = rest
	case "WORKDIR":
		if rest == "" {
			return fmt.Errorf("WORKDIR requires a path")
		}
		if !strings.HasPrefix(rest, "/") {
			base := c.WorkingDir
			if base == "" {
				base = "/"
			}
			rest = strings.TrimSuffix(base, "/") + "/" + rest
		}
		c.WorkingDir = rest
	case "STOPSIGNAL":
		if rest == "" {
			return fmt.Errorf("STOPSIGNAL requires a signal")
		}
		c.StopSignal = rest
	case "ONBUILD":
		if rest == "" {
			return fmt.Errorf("ONBUILD requires an instruction")
		}
		c.OnBuild = append(c.OnBuild, rest)
	case "HEALTHCHECK":
		return healthcheck(c, rest)
	default:
		return fmt.Errorf("%s is not a valid change command", keyword)
	}
	return nil
}

// commandForm reads CMD/ENTRYPOINT arguments: a JSON array (exec form) or
// a string run by /bin/sh -c (shell form).
func commandForm(s string) []string {
	if strings.HasPrefix(s, "[") {
		var args []string
		if json.Unmarshal([]byte(s), &args) == nil {
			return args
		}
	}
	if s == "" {
		return nil
	}
	return []string{"/bin/sh", "-c", s}
}

func setEnv(env []string, k, v string) []string {
	for i, e := range env {
		if name, _, _ := strings.Cut(e, "="); name == k {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

// keyValues parses `k=v k2="v 2"` or the legacy `k v with spaces`.
func keyValues(s, what string) ([][2]string, error) {
	words, err := splitWords(s)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, s, err)
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("%s requires at least one argument", what)
	}
	if !strings.Contains(words[0], "=") {
		k, v, _ := strings.Cut(s, " ")
		if strings.TrimSpace(v) == "" {
			return nil, fmt.Errorf("%s %s: missing value", what, s)
		}
		return [][2]string{{k, strings.TrimSpace(v)}}, nil
	}
	var out [][2]string
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s: %q is not key=value", what, w)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

// splitWords splits on blanks, honouring double and single quotes and
// backslash escapes as a Dockerfile does.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case r == '\\' && quote != '\'':
			escaped = true
			inWord = true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote = r
			inWord = true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func validPortSpec(p string) bool {
	lo, hi, isRange := strings.Cut(p, "-")
	ok := func(s string) bool {
		if s == "" || len(s) > 5 {
			return false
		}
		n := 0
		for _, r := range s {
			if r < '0' || r > '9' {
				return false
			}
			n = n*10 + int(r-'0')
		}
		return n >= 1 && n <= 65535
	}
	return ok(lo) && (!isRange || ok(hi))
}

// healthcheck parses HEALTHCHECK [--interval=… --timeout=… --start-period=…
// --retries=N] CMD … | NONE.
func healthcheck(c *dockerspec.DockerOCIImageConfig, rest string) error {
	if strings.EqualFold(strings.TrimSpace(rest), "NONE") {
		c.Healthcheck = &dockerspec.HealthcheckConfig{Test: []string{"NONE"}}
		return nil
	}
	hc := &dockerspec.HealthcheckConfig{}
	for strings.HasPrefix(rest, "--") {
		opt, after, _ := strings.Cut(rest, " ")
		rest = strings.TrimSpace(after)
		k, v, ok := strings.Cut(strings.TrimPrefix(opt, "--"), "=")
		if !ok {
			return fmt.Errorf("HEALTHCHECK %s: expected --name=value", opt)
		}
		if k == "retries" {
			var n int
			if _, err := fmt.Sscanf(v, "%d", &n); err != nil || n < 0 {
				return fmt.Errorf("HEALTHCHECK --retries=%s: not a count", v)
			}
			hc.Retries = n
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("HEALTHCHECK --%s=%s: %w", k, v, err)
		}
		switch k {
		case "interval":
			hc.Interval = d
		case "timeout":
			hc.Timeout = d
		case "start-period":
			hc.StartPeriod = d
		case "start-interval":
			hc.StartInterval = d
		default:
			return fmt.Errorf("HEALTHCHECK: unknown flag --%s", k)
		}
	}
	kw, cmd, _ := strings.Cut(rest, " ")
	if !strings.EqualFold(kw, "CMD") || strings.TrimSpace(cmd) == "" {
		return fmt.Errorf("HEALTHCHECK needs CMD and a command, or NONE")
	}
	cmd = strings.TrimSpace(cmd)
	if strings.HasPrefix(cmd, "[") {
		var args []string
		if err := json.Unmarshal([]byte(cmd), &args); err != nil {
			return fmt.Errorf("HEALTHCHECK CMD %s: %w", cmd, err)
		}
		hc.Test = append([]string{"CMD"}, args...)
	} else {
		hc.Test = []string{"CMD-SHELL", cmd}
	}
	c.Healthcheck = hc
	return nil
}
