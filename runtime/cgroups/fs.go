package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// writeFile writes value to a cgroup control file with a single write(2):
// the kernel parses each write as one command, so the value must not be
// split, and O_TRUNC keeps the call valid on files that are not cgroupfs
// (tests use plain files).
//
// Plain system calls rather than os.File: a container start writes about a
// hundred of these files, and os.File would add a poller registration and
// flag changes to each.
func writeFile(dir, name, value string) error {
	p := filepath.Join(dir, name)
	fd, err := retryEINTR(func() (int, error) { return unix.Open(p, unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0) })
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", value, p, &fs.PathError{Op: "open", Path: p, Err: err})
	}
	_, werr := retryEINTR(func() (int, error) { return unix.Write(fd, []byte(value)) })
	cerr := unix.Close(fd)
	if werr != nil {
		return fmt.Errorf("write %q to %s: %w", value, p, &fs.PathError{Op: "write", Path: p, Err: werr})
	}
	if cerr != nil {
		return fmt.Errorf("close %s: %w", p, cerr)
	}
	return nil
}

func readFile(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	fd, err := retryEINTR(func() (int, error) { return unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0) })
	if err != nil {
		return "", fmt.Errorf("read %s: %w", p, &fs.PathError{Op: "open", Path: p, Err: err})
	}
	defer unix.Close(fd)
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := retryEINTR(func() (int, error) { return unix.Read(fd, buf) })
		if err != nil {
			return "", fmt.Errorf("read %s: %w", p, &fs.PathError{Op: "read", Path: p, Err: err})
		}
		if n == 0 {
			break
		}
		out = append(out, buf[:n]...)
	}
	return strings.TrimSpace(string(out)), nil
}

func retryEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if err != unix.EINTR {
			return n, err
		}
	}
}

func fileExists(dir, name string) bool {
	_, err := os.Stat(filepath.Join(dir, name))
	return err == nil
}

func dirExists(dir string) bool {
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir()
}

// readUint reads a single-number file. "max" maps to math.MaxUint64. A
// missing file is reported with fs.ErrNotExist so callers may ignore it.
func readUint(dir, name string) (uint64, error) {
	s, err := readFile(dir, name)
	if err != nil {
		return 0, err
	}
	v, err := parseUint(s)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", filepath.Join(dir, name), err)
	}
	return v, nil
}

// parseUint parses a cgroup number. "max" is unlimited; negative numbers
// (v1 writes back -1 in a few places) also mean unlimited.
func parseUint(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "max" {
		return math.MaxUint64, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		if i, ierr := strconv.ParseInt(s, 10, 64); ierr == nil && i < 0 {
			return math.MaxUint64, nil
		}
		return 0, err
	}
	return v, nil
}

// parseKeyed parses "key value" lines (memory.stat, cpu.stat, *.events).
func parseKeyed(s string) map[string]uint64 {
	out := map[string]uint64{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, err := parseUint(f[1])
		if err != nil {
			continue
		}
		out[f[0]] = v
	}
	return out
}

// readKeyed reads a "key value" file; a missing file yields an empty map.
func readKeyed(dir, name string) (map[string]uint64, error) {
	s, err := readFile(dir, name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return map[string]uint64{}, nil
		}
		return nil, err
	}
	return parseKeyed(s), nil
}

// readControllers returns the words of cgroup.controllers or
// cgroup.subtree_control.
func readControllers(dir, name string) (map[string]bool, error) {
	s, err := readFile(dir, name)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, c := range strings.Fields(s) {
		out[c] = true
	}
	return out, nil
}

// readProcs reads the pids in a cgroup.procs file.
func readProcs(dir string) ([]int, error) {
	s, err := readFile(dir, "cgroup.procs")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(s) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", filepath.Join(dir, "cgroup.procs"), err)
		}
		out = append(out, pid)
	}
	return out, nil
}

// subdirs returns dir and every directory below it, parents before
// children. Directories vanishing during the walk are skipped, because
// processes inside the container may remove their own sub-cgroups.
func subdirs(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				if p == dir {
					return err
				}
				return nil
			}
			return err
		}
		if d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", dir, err)
	}
	return out, nil
}

func readDirNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read dir %s: %w", dir, err)
	}
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out, nil
}
