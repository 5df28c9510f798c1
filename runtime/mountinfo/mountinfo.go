// Package mountinfo parses /proc/<pid>/mountinfo, for the packages that
// need to know what is mounted where (cgroups, rootfs).
package mountinfo

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Mount is one line of mountinfo.
type Mount struct {
	Root       string   // path inside the mounted filesystem that is visible
	Mountpoint string   // where it is mounted
	Optional   []string // optional fields: "shared:N", "master:N"...
	FSType     string
	Source     string
	SuperOpts  []string
}

// Read parses the calling thread's mountinfo (threads may be in different
// mount namespaces), keeping the mounts for which keep returns true (all
// when keep is nil).
func Read(keep func(*Mount) bool) ([]Mount, error) {
	f, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("open mountinfo: %w", err)
	}
	defer f.Close()
	return Parse(f, keep)
}

// Parse reads mountinfo text.
func Parse(r io.Reader, keep func(*Mount) bool) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		// The optional fields have variable length; " - " separates them
		// from the filesystem type, source and super options.
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f := strings.Fields(pre)
		p := strings.Fields(post)
		if len(f) < 6 || len(p) < 1 {
			return nil, fmt.Errorf("parse mountinfo line %q: too few fields", line)
		}
		m := Mount{
			Root:       Unescape(f[3]),
			Mountpoint: Unescape(f[4]),
			Optional:   f[6:],
			FSType:     p[0],
		}
		if len(p) >= 2 {
			m.Source = Unescape(p[1])
		}
		if len(p) >= 3 {
			m.SuperOpts = strings.Split(p[2], ",")
		}
		if keep == nil || keep(&m) {
			out = append(out, m)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

// Unescape undoes the octal escaping (\040 for space...) the kernel applies
// to paths in mountinfo.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
