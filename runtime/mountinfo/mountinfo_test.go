package mountinfo

import (
	"strings"
	"testing"
)

const sample = `22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
31 22 0:27 /sub /mnt/a\040b rw master:3 - tmpfs tmp\040fs rw,size=1k
`

func TestParse(t *testing.T) {
	ms, err := Parse(strings.NewReader(sample), nil)
	if err != nil || len(ms) != 3 {
		t.Fatalf("Parse: %v %d", err, len(ms))
	}
	m := ms[2]
	if m.Root != "/sub" || m.Mountpoint != "/mnt/a b" || m.FSType != "tmpfs" || m.Source != "tmp fs" ||
		strings.Join(m.Optional, " ") != "master:3" || strings.Join(m.SuperOpts, ",") != "rw,size=1k" {
		t.Errorf("parsed %+v", m)
	}
	cg, _ := Parse(strings.NewReader(sample), func(m *Mount) bool { return m.FSType == "cgroup" })
	if len(cg) != 1 || cg[0].Mountpoint != "/sys/fs/cgroup/memory" {
		t.Errorf("filtered %+v", cg)
	}
	if _, err := Parse(strings.NewReader("1 2 3 - cgroup\n"), nil); err == nil {
		t.Error("a short line was accepted")
	}
	if got := Unescape(`/trailing\04`); got != `/trailing\04` {
		t.Errorf("a short escape must stay, got %q", got)
	}
}
