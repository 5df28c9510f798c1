package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Load reads and validates bundle/config.json.
func Load(bundle string) (*specs.Spec, error) {
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("bundle %s has no config.json", bundle)
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if err := Validate(&s); err != nil {
		return nil, fmt.Errorf("invalid %s: %w", path, err)
	}
	return &s, nil
}

// NamespaceTypes lists the namespace types this runtime knows.
var NamespaceTypes = []specs.LinuxNamespaceType{
	specs.PIDNamespace, specs.NetworkNamespace, specs.MountNamespace, specs.IPCNamespace,
	specs.UTSNamespace, specs.UserNamespace, specs.CgroupNamespace, specs.TimeNamespace,
}

// Validate checks what the runtime relies on before it creates anything.
func Validate(s *specs.Spec) error {
	if s.Version == "" {
		return errors.New("ociVersion is empty")
	}
	if !strings.HasPrefix(s.Version, "1.") {
		return fmt.Errorf("unsupported ociVersion %q (want 1.x)", s.Version)
	}
	if s.Root == nil || s.Root.Path == "" {
		return errors.New("root.path is required")
	}
	if s.Linux == nil {
		return errors.New("the linux section is required")
	}
	if s.Process != nil {
		if len(s.Process.Args) == 0 {
			return errors.New("process.args must not be empty")
		}
		if s.Process.Cwd == "" || !filepath.IsAbs(s.Process.Cwd) {
			return fmt.Errorf("process.cwd %q must be an absolute path", s.Process.Cwd)
		}
	}
	seen := map[specs.LinuxNamespaceType]bool{}
	for _, ns := range s.Linux.Namespaces {
		known := false
		for _, t := range NamespaceTypes {
			if ns.Type == t {
				known = true
			}
		}
		if !known {
			return fmt.Errorf("unknown namespace type %q", ns.Type)
		}
		if seen[ns.Type] {
			return fmt.Errorf("namespace %q listed twice", ns.Type)
		}
		seen[ns.Type] = true
		if ns.Path != "" && !filepath.IsAbs(ns.Path) {
			return fmt.Errorf("namespace %s path %q must be absolute", ns.Type, ns.Path)
		}
	}
	if (len(s.Linux.UIDMappings) > 0 || len(s.Linux.GIDMappings) > 0) && !seen[specs.UserNamespace] {
		return errors.New("uid/gid mappings need a user namespace")
	}
	for _, m := range s.Mounts {
		if m.Destination == "" {
			return errors.New("a mount has no destination")
		}
	}
	return nil
}

// HasNamespace reports whether s lists namespace t (new or joined).
func HasNamespace(s *specs.Spec, t specs.LinuxNamespaceType) (present bool, path string) {
	if s.Linux == nil {
		return false, ""
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == t {
			return true, ns.Path
		}
	}
	return false, ""
}
