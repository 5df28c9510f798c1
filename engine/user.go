package engine

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/hullproject/hull/runtime/rootfs"
	"golang.org/x/sys/unix"
)

// ExecUser is a resolved user: what a `-u user[:group]` means inside the
// container's own /etc/passwd and /etc/group.
type ExecUser struct {
	UID, GID       uint32
	AdditionalGids []uint32
	Home           string
}

// readRootFile opens a file of the container's root filesystem, resolved
// inside that root so a symlink in the image cannot point at the host's.
func readRootFile(root, path string) ([]byte, error) {
	rootFd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(rootFd)
	fd, err := rootfs.OpenInRoot(rootFd, path, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > 4<<20 {
		return nil, fmt.Errorf("%s is not a regular file of reasonable size", path)
	}
	return readAll(f)
}

func readAll(f *os.File) ([]byte, error) {
	var b strings.Builder
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		b.WriteString(sc.Text())
		b.WriteByte('\n')
	}
	return []byte(b.String()), sc.Err()
}

// ResolveUser turns "user", "uid", "user:group" or "uid:gid" into ids,
// looking names up in the container's /etc/passwd and /etc/group as Docker
// does. A numeric user missing from /etc/passwd is fine (gid 0 then).
func ResolveUser(root, spec string) (*ExecUser, error) {
	u := &ExecUser{Home: "/"}
	if spec == "" {
		spec = "0"
	}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	passwd, _ := readRootFile(root, "/etc/passwd")
	group, _ := readRootFile(root, "/etc/group")

	found := false
	uidNum, numErr := strconv.ParseUint(userPart, 10, 32)
	for _, line := range strings.Split(string(passwd), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 7 {
			continue
		}
		id, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		if f[0] == userPart || (numErr == nil && id == uidNum) {
			gid, _ := strconv.ParseUint(f[3], 10, 32)
			u.UID, u.GID, u.Home = uint32(id), uint32(gid), f[5]
			found = true
			break
		}
	}
	if !found {
		if numErr != nil {
			return nil, fmt.Errorf("unable to find user %s: no matching entries in passwd file", userPart)
		}
		u.UID = uint32(uidNum)
	}
	userName := userPart
	if hasGroup {
		gidNum, gerr := strconv.ParseUint(groupPart, 10, 32)
		gfound := false
		for _, line := range strings.Split(string(group), "\n") {
			f := strings.Split(line, ":")
			if len(f) < 3 {
				continue
			}
			id, err := strconv.ParseUint(f[2], 10, 32)
			if err != nil {
				continue
			}
			if f[0] == groupPart || (gerr == nil && id == gidNum) {
				u.GID, gfound = uint32(id), true
				break
			}
		}
		if !gfound {
			if gerr != nil {
				return nil, fmt.Errorf("unable to find group %s: no matching entries in group file", groupPart)
			}
			u.GID = uint32(gidNum)
		}
	} else {
		// Supplementary groups: those that list the user by name.
		if found && numErr == nil {
			for _, line := range strings.Split(string(passwd), "\n") {
				if f := strings.Split(line, ":"); len(f) >= 7 && f[2] == userPart {
					userName = f[0]
				}
			}
		}
		for _, line := range strings.Split(string(group), "\n") {
			f := strings.Split(line, ":")
			if len(f) < 4 || f[3] == "" {
				continue
			}
			id, err := strconv.ParseUint(f[2], 10, 32)
			if err != nil || uint32(id) == u.GID {
				continue
			}
			for _, m := range strings.Split(f[3], ",") {
				if m == userName {
					u.AdditionalGids = append(u.AdditionalGids, uint32(id))
				}
			}
		}
	}
	return u, nil
}
