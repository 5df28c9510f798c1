package container

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateID(t *testing.T) {
	for _, id := range []string{"a", "Z9", "web-1", "x_y+z.w", "0abc", strings.Repeat("a", 1024)} {
		if err := ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range []string{"", "-a", ".a", "_a", "+a", "a/b", "../x", "a b", "a\x00", "é", strings.Repeat("a", 1025)} {
		if err := ValidateID(id); err == nil {
			t.Errorf("ValidateID(%q) = nil, want an error", id)
		}
	}
}

// TestStateKeepsConfigRaw checks that the recorded config survives a save
// and a Load byte for byte, is decoded only on demand, and that a changed
// spec (update) is what the next Load sees.
func TestStateKeepsConfigRaw(t *testing.T) {
	root := t.TempDir()
	raw := []byte(`{"ociVersion":"1.2.0","hooks":{"poststop":[{"path":"/bin/true"}]},"linux":{"cgroupsPath":"/x","namespaces":[{"type":"pid"}]}}`)
	c := &Container{root: root, dir: filepath.Join(root, "c1"), State: State{ID: "c1", Config: raw}}
	if err := os.Mkdir(c.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := c.save(); err != nil {
		t.Fatal(err)
	}
	l, err := Load(root, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if string(l.State.Config) != string(raw) {
		t.Fatalf("config after Load = %s, want %s", l.State.Config, raw)
	}
	h := l.specHead()
	if h.Version != "1.2.0" || h.Hooks == nil || len(h.Hooks.Poststop) != 1 || l.spec != nil {
		t.Fatalf("specHead = %+v (full spec decoded: %v)", h, l.spec != nil)
	}
	s := l.Spec()
	if s.Linux.CgroupsPath != "/x" || len(s.Linux.Namespaces) != 1 {
		t.Fatalf("Spec() = %+v", s.Linux)
	}
	s.Linux.CgroupsPath = "/y"
	if err := l.setSpec(s); err != nil {
		t.Fatal(err)
	}
	if err := l.save(); err != nil {
		t.Fatal(err)
	}
	l2, err := Load(root, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if got := l2.Spec().Linux.CgroupsPath; got != "/y" {
		t.Fatalf("cgroupsPath after update and Load = %q, want /y", got)
	}
	// A config that does not decode gives an error, and Spec an empty spec.
	bad := &Container{State: State{ID: "bad", Config: []byte(`{"linux":7}`)}}
	if _, err := bad.loadSpec(); err == nil {
		t.Fatal("loadSpec of a bad config: no error")
	}
	if s := bad.Spec(); s == nil || s.Linux == nil {
		t.Fatal("Spec of a bad config returned nil")
	}
}
