package idmap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// CloneMapped returns a detached copy of the mount at path (with its
// submounts when recursive), ID-mapped through the user namespace userns.
// The copy disappears when the file is closed unless it was attached.
func CloneMapped(path string, userns *os.File, recursive bool) (*os.File, error) {
	flags := unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC
	attrFlags := unix.AT_EMPTY_PATH
	if recursive {
		flags |= unix.AT_RECURSIVE
		attrFlags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, path, uint(flags))
	if err != nil {
		return nil, fmt.Errorf("open_tree %s: %w", path, err)
	}
	tree := os.NewFile(uintptr(fd), path)
	if err := setIdmap(fd, userns, attrFlags); err != nil {
		tree.Close()
		return nil, idmapError(path, userns, recursive, err)
	}
	return tree, nil
}

// CloneMappedFile is CloneMapped for a file or directory held open, for
// instance with O_PATH: the copy is of the mount f is on, rooted at f, so it
// shows the object that was opened whatever its path names by now.
func CloneMappedFile(f *os.File, userns *os.File, recursive bool) (*os.File, error) {
	flags := unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC | unix.AT_EMPTY_PATH
	attrFlags := unix.AT_EMPTY_PATH
	if recursive {
		flags |= unix.AT_RECURSIVE
		attrFlags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(int(f.Fd()), "", uint(flags))
	if err != nil {
		return nil, fmt.Errorf("open_tree %s: %w", f.Name(), err)
	}
	tree := os.NewFile(uintptr(fd), f.Name())
	if err := setIdmap(fd, userns, attrFlags); err != nil {
		tree.Close()
		// Explain through the open file: its name may be stale.
		return nil, idmapErrorAt(f.Name(), "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), userns, recursive, err)
	}
	return tree, nil
}

// setIdmap maps the detached tree and makes it nodev. Every mapped tree
// is for a container, which opens devices only through the nodes the
// runtime binds for it: a node on its rootfs or a volume (carried by the
// image, put there by `docker cp`) must open nothing, whatever the devices
// cgroup says. The kernel locks the flag in the container's mount
// namespace, so the container cannot clear it.
func setIdmap(fd int, userns *os.File, flags int) error {
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_NODEV, Userns_fd: uint64(userns.Fd())}
	return unix.MountSetattr(fd, "", uint(flags), &attr)
}

// idmapError explains a failed mount_setattr(MOUNT_ATTR_IDMAP). The kernel
// says EINVAL both for a filesystem that cannot be ID-mapped and for a
// mount that already is; name which, and which filesystem.
func idmapError(path string, userns *os.File, recursive bool, err error) error {
	return idmapErrorAt(path, path, userns, recursive, err)
}

// idmapErrorAt is idmapError for an object named name in messages and
// looked up at path (such as /proc/self/fd/N).
func idmapErrorAt(name, path string, userns *os.File, recursive bool, err error) error {
	own, merr := MountOf(path)
	m := own
	if merr == nil && recursive {
		// Find the mount of the tree that refuses.
		if bad := refusingSubmount(path, m, userns); bad != nil {
			m = bad
		}
	}
	switch {
	case merr == nil && isIDMapped(m):
		return fmt.Errorf("ID-map %s: %s is already an ID-mapped mount: %w", name, m.Mountpoint, err)
	case !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("ID-map %s: %w", name, err)
	case merr != nil:
		return fmt.Errorf("ID-map %s: the filesystem of %s does not support ID-mapped mounts: %w", name, name, err)
	}
	where := name
	if m.ID != own.ID {
		where = fmt.Sprintf("%s (mounted at %s)", name, m.Mountpoint)
	}
	return fmt.Errorf("ID-map %s: the %s filesystem of %s does not support ID-mapped mounts: %w", name, m.FSType, where, err)
}

// refusingSubmount returns the first mount of the tree at path, in mount
// order, that cannot be ID-mapped on its own.
func refusingSubmount(path string, top *mountinfo.Info, userns *os.File) *mountinfo.Info {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil
	}
	ms, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil
	}
	prefix := strings.TrimSuffix(real, "/") + "/"
	for _, m := range ms {
		p := m.Mountpoint
		switch {
		case m.ID == top.ID:
			p = real
		case !strings.HasPrefix(p, prefix):
			continue
		}
		fd, err := unix.OpenTree(unix.AT_FDCWD, p, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			continue
		}
		err = setIdmap(fd, userns, unix.AT_EMPTY_PATH)
		unix.Close(fd)
		if err != nil {
			return m
		}
	}
	return nil
}

// Attach mounts a detached tree at target.
func Attach(tree *os.File, target string) error {
	if err := unix.MoveMount(int(tree.Fd()), "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount to %s: %w", target, err)
	}
	return nil
}

// MountOf returns the mount that path is on (the top one if several are
// stacked), found by its ID rather than by its mount point's name.
func MountOf(path string) (*mountinfo.Info, error) {
	id, err := mountID(path)
	if err != nil {
		return nil, err
	}
	ms, err := mountinfo.GetMounts(func(m *mountinfo.Info) (bool, bool) {
		return uint64(m.ID) != id, uint64(m.ID) == id
	})
	if err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("mount %d of %s not in mountinfo", id, path)
	}
	return ms[0], nil
}

func mountID(path string) (uint64, error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_MNT_ID, &st); err != nil {
		return 0, &os.PathError{Op: "statx", Path: path, Err: err}
	}
	return st.Mnt_id, nil
}

func isIDMapped(m *mountinfo.Info) bool {
	for _, o := range strings.Split(m.Options, ",") {
		if o == "idmapped" {
			return true
		}
	}
	return false
}

// commonDir returns the deepest directory that holds both a and b.
func commonDir(a, b string) string {
	a, b = filepath.Clean(a), filepath.Clean(b)
	for {
		a = filepath.Dir(a)
		if b == a || strings.HasPrefix(b, strings.TrimSuffix(a, "/")+"/") {
			return a
		}
	}
}
