package main

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Accounts for the generated rootfs. process_user runs as uid/gid 10 with
// the additional gid 5; the others run as root.
const (
	rootfsPasswd = `root:x:0:0:root:/root:/bin/sh
bin:x:1:1:bin:/bin:/bin/false
daemon:x:2:2:daemon:/sbin:/bin/false
test:x:10:10:validation user:/:/bin/false
nobody:x:65534:65534:nobody:/:/bin/false
`
	rootfsGroup = `root:x:0:root
bin:x:1:root,bin,daemon
daemon:x:2:root,bin,daemon
tty:x:5:
wheel:x:10:root
nogroup:x:65533:
nobody:x:65534:
`
)

// writeBusyboxRootfs writes a gzipped tar of a minimal root filesystem: a
// static busybox in /bin with a symlink per applet, empty /dev, /proc and
// /sys, and /etc/passwd and /etc/group. It stands in for runtime-tools'
// rootfs-amd64.tar.gz when the module does not carry that file.
func writeBusyboxRootfs(dst, busybox string) error {
	list, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("%s --list: %v (is busybox-static installed?)", busybox, err)
	}
	bb, err := os.Open(busybox)
	if err != nil {
		return err
	}
	defer bb.Close()
	st, err := bb.Stat()
	if err != nil {
		return err
	}

	tmp := dst + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	now := time.Now().Truncate(time.Second)
	hdr := func(h *tar.Header) error {
		h.ModTime = now
		h.Format = tar.FormatGNU
		return tw.WriteHeader(h)
	}
	for _, d := range []string{"./", "./bin/", "./dev/", "./etc/", "./proc/", "./sys/"} {
		if err := hdr(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}); err != nil {
			return err
		}
	}
	if err := hdr(&tar.Header{Typeflag: tar.TypeReg, Name: "./bin/busybox", Mode: 0o755, Size: st.Size()}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, bb); err != nil {
		return err
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := hdr(&tar.Header{Typeflag: tar.TypeSymlink, Name: "./bin/" + applet, Linkname: "busybox", Mode: 0o777}); err != nil {
			return err
		}
	}
	for name, body := range map[string]string{"./etc/passwd": rootfsPasswd, "./etc/group": rootfsGroup} {
		if err := hdr(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}); err != nil {
			return err
		}
		if _, err := io.WriteString(tw, body); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
