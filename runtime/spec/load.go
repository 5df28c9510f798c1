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
	s, _, err := Read(bundle)
	return s, err
}

// Read is Load that also returns the bytes of config.json, so that a
// caller that stores the spec again can write them as they are instead of
// encoding the parsed spec (the first encoding of the spec's types costs
// a few hundred microseconds of reflection, a noticeable part of a
// container start).
func Read(bundle string) (*specs.Spec, []byte, error) {
	data, err := ReadFile(bundle)
	if err != nil {
		return nil, nil, err
	}
	s, err := Parse(bundle, data)
	if err != nil {
		return nil, nil, err
	}
	return s, data, nil
}

// ReadFile returns the bytes of the bundle's config.json.
func ReadFile(bundle string) ([]byte, error) {
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("bundle %s has no config.json", bundle)
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}

// Parse decodes and validates the config.json of bundle, given its bytes.
func Parse(bundle string, data []byte) (*specs.Spec, error) {
	path := filepath.Join(bundle, "config.json")
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if err := Validate(&s); err != nil {
		return nil, fmt.Errorf("invalid %s: %w", path, err)
	}
	return &s, nil
}

// Namespaces is the part of a spec that creating the namespaces needs.
type Namespaces struct {
	Namespaces  []specs.LinuxNamespace           `json:"namespaces,omitempty"`
	UIDMappings []specs.LinuxIDMapping           `json:"uidMappings,omitempty"`
	GIDMappings []specs.LinuxIDMapping           `json:"gidMappings,omitempty"`
	TimeOffsets map[string]specs.LinuxTimeOffset `json:"timeOffsets,omitempty"`
}

// ParseNamespaces decodes only linux.namespaces, the id mappings and the
// time offsets. Decoding the whole spec the first time in a process costs
// half a millisecond of reflection over its many types; this part is what
// the container's first process needs at once, and costs a tenth of that.
// It does not validate: the caller still parses the whole spec. Nil means
// the spec has no linux section or does not decode.
func ParseNamespaces(data []byte) *Namespaces {
	var q struct {
		Linux *Namespaces `json:"linux"`
	}
	if json.Unmarshal(data, &q) != nil {
		return nil
	}
	return q.Linux
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
