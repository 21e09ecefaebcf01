package idmap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// CloneMapped returns a detached copy of the mount at path (its submounts
// too when recursive), ID-mapped through the user namespace userns.
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
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
	if err := unix.MountSetattr(fd, "", uint(attrFlags), &attr); err != nil {
		tree.Close()
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("the %s filesystem of %s does not support ID-mapped mounts (moat needs them to map the container's files; use ext4, xfs, btrfs or tmpfs): %w",
				fsType(path), path, err)
		}
		return nil, fmt.Errorf("ID-map %s: %w", path, err)
	}
	return tree, nil
}

// fsType names the filesystem type of path for error messages.
func fsType(path string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return "unknown"
	}
	if name, ok := fsNames[int64(st.Type)]; ok {
		return name
	}
	return fmt.Sprintf("0x%x", st.Type)
}

var fsNames = map[int64]string{
	unix.EXT4_SUPER_MAGIC: "ext4", unix.XFS_SUPER_MAGIC: "xfs", unix.BTRFS_SUPER_MAGIC: "btrfs",
	unix.TMPFS_MAGIC: "tmpfs", unix.OVERLAYFS_SUPER_MAGIC: "overlay", unix.PROC_SUPER_MAGIC: "proc",
	unix.SYSFS_MAGIC: "sysfs", unix.NFS_SUPER_MAGIC: "nfs", unix.FUSE_SUPER_MAGIC: "fuse",
	unix.CGROUP2_SUPER_MAGIC: "cgroup2", unix.SQUASHFS_MAGIC: "squashfs", unix.DEVPTS_SUPER_MAGIC: "devpts",
}

// Attach mounts a detached tree at target.
func Attach(tree *os.File, target string) error {
	if err := unix.MoveMount(int(tree.Fd()), "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount to %s: %w", target, err)
	}
	return nil
}

// Overlay describes an overlay mount by its layers.
type Overlay struct {
	// Lower are the read-only layers, top first, as in lowerdir=.
	Lower []string
	// Upper and Work are the writable layer and overlay's work directory;
	// they must be on one filesystem. Both empty makes a read-only overlay.
	Upper, Work string
	// Options are further options (index=off, redirect_dir=on, ...).
	Options []string
}

// MountOverlay mounts at target an overlay of o's layers, each ID-mapped
// through userns, whose root is uid/gid (the container root's host IDs).
//
// Overlay records its creator's credentials and does all its upper-layer
// work with them. Created by a task whose IDs are the container root's, files
// it writes go through the ID-mapped upper and land on disk with the
// container's own IDs (0, 1000, ...); the creator keeps CAP_SYS_ADMIN of the
// initial namespace, so trusted.overlay.* xattrs (opaque dirs, whiteouts of
// image layers) keep working.
func MountOverlay(target string, o Overlay, userns *os.File, uid, gid uint32) error {
	var layers []*os.File
	defer func() {
		for _, f := range layers {
			f.Close()
		}
	}()
	var lowers []*os.File
	for _, l := range o.Lower {
		t, err := CloneMapped(l, userns, false)
		if err != nil {
			return fmt.Errorf("lower layer: %w", err)
		}
		layers = append(layers, t)
		lowers = append(lowers, t)
	}
	var upper, work *os.File
	if o.Upper != "" {
		// Upper and work must be on the same mount: clone their common
		// parent once and open both through it.
		parent := filepath.Dir(o.Upper)
		if filepath.Dir(o.Work) != parent {
			return fmt.Errorf("upper %s and work %s must share a parent directory", o.Upper, o.Work)
		}
		t, err := CloneMapped(parent, userns, false)
		if err != nil {
			return fmt.Errorf("upper layer: %w", err)
		}
		layers = append(layers, t)
		for _, p := range []struct {
			dst  **os.File
			name string
		}{{&upper, o.Upper}, {&work, o.Work}} {
			fd, err := unix.Openat(int(t.Fd()), filepath.Base(p.name), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open %s: %w", p.name, err)
			}
			*p.dst = os.NewFile(uintptr(fd), p.name)
			layers = append(layers, *p.dst)
		}
	}

	errc := make(chan error, 1)
	go func() {
		// This thread's credentials change and are never changed back: it
		// stays locked, so Go discards it when the goroutine ends.
		runtime.LockOSThread()
		errc <- mountOverlayAs(target, lowers, upper, work, o.Options, uid, gid)
	}()
	return <-errc
}

func mountOverlayAs(target string, lowers []*os.File, upper, work *os.File, options []string, uid, gid uint32) error {
	if err := unix.Prctl(unix.PR_SET_SECUREBITS, secbitNoSetuidFixup, 0, 0, 0); err != nil {
		return fmt.Errorf("keep capabilities: %w", err)
	}
	// Raw syscalls: the libc/Go wrappers would change every thread.
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
		return fmt.Errorf("setresgid %d: %w", gid, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
		return fmt.Errorf("setresuid %d: %w", uid, e)
	}
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	for _, l := range lowers {
		if err := unix.FsconfigSetFd(fsfd, "lowerdir+", int(l.Fd())); err != nil {
			return fmt.Errorf("overlay lower layer %s: %w", l.Name(), err)
		}
	}
	if upper != nil {
		if err := unix.FsconfigSetFd(fsfd, "upperdir", int(upper.Fd())); err != nil {
			return fmt.Errorf("overlay upper layer %s: %w", upper.Name(), err)
		}
		if err := unix.FsconfigSetFd(fsfd, "workdir", int(work.Fd())); err != nil {
			return fmt.Errorf("overlay work dir %s: %w", work.Name(), err)
		}
	}
	for _, opt := range options {
		key, val, hasVal := cut(opt)
		var err error
		if hasVal {
			err = unix.FsconfigSetString(fsfd, key, val)
		} else {
			err = unix.FsconfigSetFlag(fsfd, key)
		}
		if err != nil {
			return fmt.Errorf("overlay option %s: %w", opt, err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("create overlay: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount overlay: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount overlay to %s: %w", target, err)
	}
	return nil
}

func cut(opt string) (key, val string, ok bool) {
	for i := 0; i < len(opt); i++ {
		if opt[i] == '=' {
			return opt[:i], opt[i+1:], true
		}
	}
	return opt, "", false
}

// secbitNoSetuidFixup keeps capabilities across a change of uid
// (SECBIT_NO_SETUID_FIXUP in <linux/securebits.h>).
const secbitNoSetuidFixup = 1 << 2
