package caps

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParse(t *testing.T) {
	for name, want := range map[string]int{"CAP_CHOWN": 0, "CAP_SYS_ADMIN": 21, "net_raw": 13, "CAP_BPF": 39} {
		got, err := Parse(name)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", name, got, err, want)
		}
	}
	if _, err := Parse("CAP_NOPE"); err == nil {
		t.Error("Parse(CAP_NOPE) succeeded")
	}
}

func TestFromSpec(t *testing.T) {
	s, ignored, err := FromSpec(&specs.LinuxCapabilities{
		Bounding: []string{"CAP_KILL", "CAP_CHOWN"},
		Ambient:  []string{"CAP_KILL"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Bounding != 1<<5|1<<0 || s.Ambient != 1<<5 || s.Effective != 0 || len(ignored) != 0 {
		t.Errorf("FromSpec = %+v ignored %v", s, ignored)
	}
	if _, _, err := FromSpec(&specs.LinuxCapabilities{Effective: []string{"CAP_BOGUS"}}); err == nil {
		t.Error("unknown capability accepted")
	}
	if len(Known()) < 38 {
		t.Errorf("Known() = %d names, kernel should know at least 38", len(Known()))
	}
}
