package spec

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestDefaultIsValidAndRoundTrips(t *testing.T) {
	for _, rootless := range []bool{false, true} {
		s := Default(rootless, 1000, 1000)
		if err := Validate(s); err != nil {
			t.Fatalf("Default(%v) invalid: %v", rootless, err)
		}
		dir := t.TempDir()
		data, _ := json.Marshal(s)
		os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644)
		if _, err := Load(dir); err != nil {
			t.Fatalf("Load: %v", err)
		}
	}
	if s := Default(true, 1000, 1000); len(s.Linux.UIDMappings) != 1 || s.Linux.UIDMappings[0].HostID != 1000 {
		t.Errorf("rootless mapping %v", s.Linux.UIDMappings)
	}
}

func TestValidateRejects(t *testing.T) {
	cases := map[string]func(*specs.Spec){
		"unknown namespace type": func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "nope"})
		},
		"listed twice": func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "pid"})
		},
		"unsupported ociVersion":  func(s *specs.Spec) { s.Version = "2.0.0" },
		"root.path is required":   func(s *specs.Spec) { s.Root = nil },
		"process.args":            func(s *specs.Spec) { s.Process.Args = nil },
		"must be an absolute":     func(s *specs.Spec) { s.Process.Cwd = "tmp" },
		"need a user namespace":   func(s *specs.Spec) { s.Linux.UIDMappings = []specs.LinuxIDMapping{{Size: 1}} },
		"linux section":           func(s *specs.Spec) { s.Linux = nil },
		"path \"ns\" must be abs": func(s *specs.Spec) { s.Linux.Namespaces[0].Path = "ns" },
	}
	for want, mutate := range cases {
		s := Default(false, 0, 0)
		mutate(s)
		err := Validate(s)
		if err == nil || !strings.Contains(err.Error(), strings.Fields(want)[0]) {
			t.Errorf("%s: got %v", want, err)
		}
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no config.json") {
		t.Errorf("missing config.json: %v", err)
	}
}
