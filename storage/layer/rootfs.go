package layer

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hullproject/hull/storage/archive"
	"github.com/hullproject/hull/storage/meta"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// ErrRootfsUnknown means a container root filesystem the store does not
// hold.
var ErrRootfsUnknown = errors.New("root filesystem not found")

func (s *Store) rootfsDir(id string) (string, error) {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return "", fmt.Errorf("invalid root filesystem id %q", id)
	}
	return filepath.Join(s.root, "rootfs", id), nil
}

// CreateRootfs makes a container's writable root filesystem over the layer
// chain ending at top ("" for an image without layers) and records that
// the image is in use.
func (s *Store) CreateRootfs(id string, image, top digest.Digest) (*meta.Rootfs, error) {
	return s.createRootfs(id, image, top, false)
}

// CreateImageView records a read-only view of an image's layers (for
// `hull image mount`): Mount gives the image's tree, read-only, without a
// copy and without an upper layer.
func (s *Store) CreateImageView(id string, image, top digest.Digest) (*meta.Rootfs, error) {
	return s.createRootfs(id, image, top, true)
}

func (s *Store) createRootfs(id string, image, top digest.Digest, readOnly bool) (*meta.Rootfs, error) {
	dir, err := s.rootfsDir(id)
	if err != nil {
		return nil, err
	}
	r := &meta.Rootfs{ID: id, Image: image, Top: top, Driver: s.driver, Created: time.Now().UTC(), ReadOnly: readOnly}
	made := false
	err = s.db.Update(func(tx *meta.Tx) error {
		if _, err := tx.Rootfs(id); err == nil {
			return fmt.Errorf("root filesystem %s exists", id)
		}
		if top != "" {
			if err := Ref(tx, top); err != nil {
				return err
			}
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("root filesystem %s: %w", id, err)
		}
		made = true
		for _, d := range []string{"upper", "work", "merged"} {
			if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
				return err
			}
		}
		if s.driver == VFS && top != "" && !readOnly {
			l, err := tx.Layer(top)
			if err != nil {
				return err
			}
			// Copy inside the transaction: the layer cannot go away meanwhile.
			if err := copyTree(s.DiffDir(l), filepath.Join(dir, "merged")); err != nil {
				return fmt.Errorf("copy image into root filesystem: %w", err)
			}
		}
		return tx.PutRootfs(r)
	})
	if err != nil {
		if made {
			removeTree(dir)
		}
		return nil, err
	}
	return r, nil
}

// lowerDirs lists the layer directories of a chain, topmost first, as
// overlayfs wants them.
func (s *Store) lowerDirs(tx *meta.Tx, top digest.Digest) ([]string, error) {
	var dirs []string
	for c := top; c != ""; {
		l, err := tx.Layer(c)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", c, ErrLayerUnknown)
		}
		dirs = append(dirs, s.DiffDir(l))
		c = l.Parent
	}
	return dirs, nil
}

// Mount makes the root filesystem available and returns its path. Mounting
// a mounted root filesystem returns the same path.
func (s *Store) Mount(id string) (string, error) {
	dir, err := s.rootfsDir(id)
	if err != nil {
		return "", err
	}
	merged := filepath.Join(dir, "merged")
	var lowers []string
	var r *meta.Rootfs
	err = s.db.View(func(tx *meta.Tx) error {
		var err error
		if r, err = tx.Rootfs(id); err != nil {
			return fmt.Errorf("%s: %w", id, ErrRootfsUnknown)
		}
		if r.Driver == VFS && !r.ReadOnly {
			return nil
		}
		lowers, err = s.lowerDirs(tx, r.Top)
		return err
	})
	if err != nil || (s.driver == VFS && !r.ReadOnly) {
		return merged, err
	}
	if mounted, err := isMountPoint(merged); err != nil {
		return "", err
	} else if mounted {
		return merged, nil
	}
	empty := filepath.Join(s.root, "empty")
	os.MkdirAll(empty, 0o755)
	if r.ReadOnly {
		if s.driver == VFS {
			// A vfs layer directory holds the whole tree: bind it.
			if len(lowers) == 0 {
				lowers = []string{empty}
			}
			err = bindReadOnly(lowers[0], merged)
		} else {
			// Without an upper layer overlayfs wants two lower ones.
			err = mountOverlay(merged, append(lowers, empty), "", "")
		}
	} else {
		if len(lowers) == 0 {
			// overlayfs needs at least one lower directory.
			lowers = []string{empty}
		}
		err = mountOverlay(merged, lowers, filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
	}
	if err != nil {
		return "", fmt.Errorf("mount root filesystem %s: %w", id, err)
	}
	return merged, nil
}

// Unmount detaches a mounted root filesystem; unmounted is not an error.
func (s *Store) Unmount(id string) error {
	dir, err := s.rootfsDir(id)
	if err != nil {
		return err
	}
	merged := filepath.Join(dir, "merged")
	for {
		if mounted, err := isMountPoint(merged); err != nil || !mounted {
			return nil
		}
		err := unix.Unmount(merged, unix.UMOUNT_NOFOLLOW)
		if err == unix.EINVAL || err == unix.ENOENT {
			return nil
		}
		if err == unix.EBUSY {
			// Busy with a process inside: detach lazily, the kernel frees
			// the mount when the last user goes.
			return unix.Unmount(merged, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", merged, err)
		}
	}
}

// RemoveRootfs unmounts and deletes a root filesystem and drops its hold
// on the image's layers.
func (s *Store) RemoveRootfs(id string) error {
	dir, err := s.rootfsDir(id)
	if err != nil {
		return err
	}
	if err := s.Unmount(id); err != nil {
		return err
	}
	cleanup := func() {}
	err = s.db.Update(func(tx *meta.Tx) error {
		r, err := tx.Rootfs(id)
		if err != nil {
			return fmt.Errorf("%s: %w", id, ErrRootfsUnknown)
		}
		if err := tx.DeleteRootfs(id); err != nil {
			return err
		}
		gone, err := Unref(tx, r.Top)
		cleanup = s.Retire(gone)
		return err
	})
	if err != nil {
		return err
	}
	cleanup()
	if err := removeTree(dir); err != nil {
		return fmt.Errorf("remove root filesystem %s: %w", id, err)
	}
	return nil
}

// Rootfs returns a root filesystem record.
func (s *Store) Rootfs(id string) (*meta.Rootfs, error) {
	var r *meta.Rootfs
	err := s.db.View(func(tx *meta.Tx) error {
		var err error
		r, err = tx.Rootfs(id)
		return err
	})
	if errors.Is(err, meta.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", id, ErrRootfsUnknown)
	}
	return r, err
}

// Diff writes the container's changes to its image as an OCI layer tar.
func (s *Store) Diff(id string, w io.Writer) error {
	dir, err := s.rootfsDir(id)
	if err != nil {
		return err
	}
	r, err := s.Rootfs(id)
	if err != nil {
		return err
	}
	if r.Driver == VFS {
		lower := ""
		if r.Top != "" {
			l, err := s.Get(r.Top)
			if err != nil {
				return err
			}
			lower = s.DiffDir(l)
		} else {
			lower = filepath.Join(dir, "upper") // empty
		}
		return archive.WriteTreeDiff(w, lower, filepath.Join(dir, "merged"))
	}
	return archive.WriteDiff(w, filepath.Join(dir, "upper"))
}

// UpperDir is where a container's own changes live (the whole tree for vfs).
func (s *Store) UpperDir(id string) (string, error) {
	dir, err := s.rootfsDir(id)
	if err != nil {
		return "", err
	}
	if s.driver == VFS {
		return filepath.Join(dir, "merged"), nil
	}
	return filepath.Join(dir, "upper"), nil
}

// mountOverlay mounts an overlay through the new mount API, adding each
// lower directory with its own "lowerdir+" parameter: the classic mount(2)
// options string is capped at one page, which a deep image with long layer
// paths overflows. Kernels before 6.8 lack "lowerdir+"; there the classic
// string is used when it fits.
func mountOverlay(target string, lowers []string, upper, work string) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err == nil {
		defer unix.Close(fd)
		err = configOverlay(fd, lowers, upper, work)
		if err == nil {
			attrs := 0
			if upper == "" {
				attrs = unix.MOUNT_ATTR_RDONLY
			}
			mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, attrs)
			if err != nil {
				return fmt.Errorf("fsmount overlay: %w", err)
			}
			defer unix.Close(mfd)
			if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
				return fmt.Errorf("move_mount overlay to %s: %w", target, err)
			}
			return nil
		}
		if !errors.Is(err, errNoLowerdirPlus) {
			return err
		}
	}
	opts := "lowerdir=" + strings.Join(lowers, ":") + ",redirect_dir=off,metacopy=off"
	var flags uintptr
	if upper != "" {
		opts += ",upperdir=" + upper + ",workdir=" + work
	} else {
		flags = unix.MS_RDONLY
	}
	if len(opts) >= os.Getpagesize()-1 {
		return fmt.Errorf("overlay options for %d layers exceed the kernel's limit and this kernel has no lowerdir+ (needs Linux 6.8)", len(lowers))
	}
	if err := unix.Mount("overlay", target, "overlay", flags, opts); err != nil {
		return fmt.Errorf("mount overlay: %w", err)
	}
	return nil
}

var errNoLowerdirPlus = errors.New("overlay: lowerdir+ unsupported")

func configOverlay(fd int, lowers []string, upper, work string) error {
	for i, l := range lowers {
		if err := unix.FsconfigSetString(fd, "lowerdir+", l); err != nil {
			if i == 0 && err == unix.EINVAL {
				return errNoLowerdirPlus
			}
			return fmt.Errorf("overlay lower %s: %w", l, err)
		}
	}
	// Diff reads the upper directory as a plain layer: renamed
	// directories and metadata-only copies, which overlayfs may record as
	// redirect and metacopy xattrs when a host enables them by default,
	// must be real copies there.
	for _, feature := range []string{"redirect_dir", "metacopy"} {
		if err := unix.FsconfigSetString(fd, feature, "off"); err != nil {
			return fmt.Errorf("overlay %s=off: %w", feature, err)
		}
	}
	if upper != "" {
		if err := unix.FsconfigSetString(fd, "upperdir", upper); err != nil {
			return fmt.Errorf("overlay upper %s: %w", upper, err)
		}
		if err := unix.FsconfigSetString(fd, "workdir", work); err != nil {
			return fmt.Errorf("overlay work %s: %w", work, err)
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fmt.Errorf("create overlay: %w", err)
	}
	return nil
}

// bindReadOnly binds src at target, read-only.
func bindReadOnly(src, target string) error {
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		unix.Unmount(target, unix.MNT_DETACH)
		return fmt.Errorf("bind %s read-only: %w", src, err)
	}
	return nil
}

// isMountPoint reports whether dir is the root of a mount, comparing its
// mount ID with its parent's.
func isMountPoint(dir string) (bool, error) {
	var st, pst unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, dir, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &st); err != nil {
		return false, fmt.Errorf("stat %s: %w", dir, err)
	}
	if err := unix.Statx(unix.AT_FDCWD, filepath.Dir(dir), unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &pst); err != nil {
		return false, fmt.Errorf("stat %s: %w", filepath.Dir(dir), err)
	}
	return st.Mnt_id != pst.Mnt_id, nil
}
