package image

import (
	"archive/tar"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/hullproject/hull/storage/meta"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
)

// BusyboxPath is where Debian's busybox-static installs its binary.
const BusyboxPath = "/bin/busybox"

// DefaultPath is the PATH Docker's images set.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

var busyboxPasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`

var busyboxGroup = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
`

// Bootstrap makes a busybox image from the host's static busybox: the
// binary, a hard link for every applet at the path busybox lists for it,
// /etc/passwd and /etc/group. Every time and owner in it is fixed, so the
// same busybox always gives the same image ID.
func (s *Store) Bootstrap(recipe string, names []string) (*meta.Image, error) {
	if recipe != "busybox" {
		return nil, fmt.Errorf("unknown bootstrap image %q: only busybox can be made from the host", recipe)
	}
	if len(names) == 0 {
		names = []string{"busybox:latest"}
	}
	bin, err := os.Open(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("bootstrap busybox: %w (install Debian's busybox-static)", err)
	}
	defer bin.Close()
	if err := checkStatic(bin); err != nil {
		return nil, err
	}
	st, err := bin.Stat()
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(BusyboxPath, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("bootstrap busybox: %s --list-full: %w", BusyboxPath, err)
	}
	applets := strings.Fields(string(out))
	sort.Strings(applets)
	mtime := st.ModTime().UTC().Truncate(time.Second)

	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(writeBusyboxTar(pw, bin, st.Size(), applets, mtime))
	}()
	img, err := s.Import(pr, NewImage{
		Config: dockerspec.DockerOCIImageConfig{
			ImageConfig: dockerImageConfig([]string{DefaultPath}, []string{"sh"}),
		},
		Created:   mtime,
		CreatedBy: "hull image bootstrap busybox",
		Comment:   "made from the host's " + BusyboxPath,
		Names:     names,
	}, nil)
	pr.CloseWithError(err)
	return img, err
}

func checkStatic(f *os.File) error {
	e, err := elf.NewFile(f)
	if err != nil {
		return fmt.Errorf("bootstrap busybox: %s is not an ELF binary: %w", f.Name(), err)
	}
	defer e.Close()
	for _, p := range e.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("bootstrap busybox: %s is dynamically linked; install Debian's busybox-static", f.Name())
		}
	}
	return nil
}

func writeBusyboxTar(w io.Writer, bin *os.File, size int64, applets []string, mtime time.Time) error {
	tw := tar.NewWriter(w)
	hdr := func(h *tar.Header) error {
		h.ModTime = mtime
		h.Format = tar.FormatPAX
		h.PAXRecords = nil
		return tw.WriteHeader(h)
	}
	dirs := map[string]int64{
		"bin/": 0o755, "dev/": 0o755, "etc/": 0o755, "home/": 0o755, "proc/": 0o555,
		"root/": 0o700, "sys/": 0o555, "tmp/": 0o1777, "usr/": 0o755, "usr/bin/": 0o755,
		"usr/sbin/": 0o755, "sbin/": 0o755, "var/": 0o755, "var/spool/": 0o755,
		"var/spool/mail/": 0o755, "var/www/": 0o755,
	}
	for _, a := range applets {
		for d := path.Dir(a); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := dirs[d+"/"]; !ok {
				dirs[d+"/"] = 0o755
			}
		}
	}
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		if err := hdr(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: dirs[d]}); err != nil {
			return err
		}
	}
	if err := hdr(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: size}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, bin); err != nil {
		return fmt.Errorf("bootstrap busybox: %w", err)
	}
	for _, a := range applets {
		a = strings.TrimPrefix(path.Clean("/"+a), "/")
		if a == "bin/busybox" || a == "" {
			continue
		}
		if err := hdr(&tar.Header{Typeflag: tar.TypeLink, Name: a, Linkname: "bin/busybox", Mode: 0o755}); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		name, body string
		mode       int64
	}{
		{"etc/group", busyboxGroup, 0o644},
		{"etc/passwd", busyboxPasswd, 0o644},
		{"etc/nsswitch.conf", "hosts: files dns\n", 0o644},
	} {
		if err := hdr(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.body))}); err != nil {
			return err
		}
		if _, err := io.WriteString(tw, f.body); err != nil {
			return err
		}
	}
	return tw.Close()
}
