package hooks

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestRunPassesStateAndEnv(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	h := specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", `cat > "$OUT"; printf "\\n%s\\n" "$HOOKVAR" >> "$OUT"`},
		Env: []string{"OUT=" + out, "HOOKVAR=hello"}}
	st := &specs.State{Version: specs.Version, ID: "c1", Status: specs.StateCreating, Pid: 42, Bundle: "/b"}
	if err := Run("prestart", []specs.Hook{h}, st); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(data), "\n", 2)
	var got specs.State
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatalf("hook stdin is not state JSON: %q", lines[0])
	}
	if got.ID != "c1" || got.Pid != 42 || strings.TrimSpace(lines[1]) != "hello" {
		t.Errorf("hook saw %+v and %q", got, lines[1])
	}
}

func TestRunFailureAndTimeout(t *testing.T) {
	st := &specs.State{ID: "c1"}
	err := Run("poststop", []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo boom >&2; exit 3"}}}, st)
	if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "poststop") {
		t.Errorf("want failure naming the hook and its output, got %v", err)
	}
	one := 1
	err = Run("prestart", []specs.Hook{{Path: "/bin/sleep", Args: []string{"sleep", "30"}, Timeout: &one}}, st)
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("want timeout, got %v", err)
	}
	// Later hooks do not run after a failure.
	marker := filepath.Join(t.TempDir(), "ran")
	_ = Run("prestart", []specs.Hook{{Path: "/bin/false"}, {Path: "/bin/touch", Args: []string{"touch", marker}}}, st)
	if _, err := os.Stat(marker); err == nil {
		t.Error("hook after a failing one ran")
	}
}

func TestRunAllContinuesAfterFailure(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	err := RunAll("poststop", []specs.Hook{{Path: "/bin/false"}, {Path: "/bin/touch", Args: []string{"touch", marker}}}, &specs.State{ID: "c1"})
	if err == nil || !strings.Contains(err.Error(), "poststop hook #0") {
		t.Errorf("want the first hook's failure reported, got %v", err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Error("the hook after a failing poststop hook did not run")
	}
}
