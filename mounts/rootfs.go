// Package mounts owns a container's mounts: the policy on what may be
// mounted and the assembly of the root filesystem from ID-mapped mounts
// (on top of package idmap), and its teardown.
package mounts

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/idmap"
	"github.com/moatrt/moat/internal/undo"
)

const (
	// workPrefix names the overlay work dirs Rootfs makes beside an upper
	// layer. Docker's (or containerd's) overlay stays mounted on the same
	// upper, and overlay wipes its work dir's "work" at mount time, which
	// breaks copy-up and whiteouts in the other mount: never share it.
	workPrefix = "moat-work-"
	// workRecord is the file, in the target dir under the rootfs mount,
	// that names the work dir for Teardown. It lives and dies with target.
	workRecord = ".moat-workdir"
)

// Rootfs makes target show source ID-mapped into userns.
//
// If source is the mount point of an overlay (Docker's overlay2
// <data-root>/overlay2/<id>/merged, containerd's overlayfs snapshotter),
// target gets an overlay of its own over the same lower and upper layers,
// each ID-mapped, with a work dir of its own next to the upper; the mount
// at source is left alone. Otherwise target is a recursive ID-mapped bind
// of source.
//
// target is created (0711) if missing and must not be a mount point or hold
// anything. table returns the mount table, read after the mount at source
// was made; nil reads it. It is asked only when source is on an overlay: the
// table grows with every mount on the host, and a plain directory needs none
// of it. On error, Rootfs leaves nothing mounted or created.
func Rootfs(source, target string, userns *idmap.Userns, table func() (MountTable, error)) (retErr error) {
	src, err := filepath.EvalSymlinks(source)
	if err != nil {
		return fmt.Errorf("rootfs source: %w", err)
	}
	if fi, err := os.Stat(src); err != nil {
		return fmt.Errorf("rootfs source: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("rootfs source %s is not a directory", source)
	}
	ov, err := rootfsOverlay(src, table)
	if err != nil {
		return err
	}

	var u undo.Stack
	defer u.OnError(&retErr)
	target, created, err := makeTarget(target)
	if err != nil {
		return err
	}
	u.Add(func() { removeDirs(created) })

	if ov == nil {
		ns, err := userns.File()
		if err != nil {
			return err
		}
		tree, err := idmap.CloneMapped(src, ns, true)
		if err != nil {
			return err
		}
		defer tree.Close()
		if err := makeSlave(tree); err != nil {
			return fmt.Errorf("rootfs %s: %w", src, err)
		}
		return idmap.Attach(tree, target)
	}

	if ov.Upper != "" {
		ov.Work, err = os.MkdirTemp(filepath.Dir(ov.Upper), workPrefix)
		if err != nil {
			return fmt.Errorf("make overlay work dir: %w", err)
		}
		u.Add(func() { os.RemoveAll(ov.Work) })
		record := filepath.Join(target, workRecord)
		if err := os.WriteFile(record, []byte(ov.Work), 0o600); err != nil {
			return fmt.Errorf("record overlay work dir: %w", err)
		}
		u.Add(func() { os.Remove(record) })
	}
	if err := idmap.MountOverlay(target, *ov, userns); err != nil {
		return fmt.Errorf("overlay at %s: %w", source, err)
	}
	return nil
}

// rootfsOverlay returns the layers of the overlay mounted at src, or nil if
// there is none. Only an overlay filesystem can have an overlay mounted at
// src, so the mount table is read only when src is on one.
func rootfsOverlay(src string, table func() (MountTable, error)) (*idmap.Overlay, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(src, &fs); err != nil {
		return nil, fmt.Errorf("rootfs source %s: statfs: %w", src, err)
	}
	if fs.Type != unix.OVERLAYFS_SUPER_MAGIC {
		return nil, nil
	}
	if table == nil {
		table = ReadMountTable
	}
	t, err := table()
	if err != nil {
		return nil, err
	}
	return overlayAt(src, t)
}

// makeTarget creates target and any missing parents (0711) and returns its
// absolute path and the dirs it created, parents first. An existing target
// must be an empty directory that is not a mount point.
func makeTarget(target string) (string, []string, error) {
	target, err := filepath.Abs(target)
	if err != nil {
		return "", nil, fmt.Errorf("rootfs target: %w", err)
	}
	created, err := mkdirs(target, 0o711)
	if err != nil {
		return "", nil, fmt.Errorf("make rootfs target: %w", err)
	}
	if len(created) > 0 {
		return target, created, nil
	}
	real, err := filepath.EvalSymlinks(target)
	if err != nil {
		return "", nil, fmt.Errorf("rootfs target: %w", err)
	}
	if mounted, err := mountinfo.Mounted(real); err != nil {
		return "", nil, fmt.Errorf("rootfs target: %w", err)
	} else if mounted {
		return "", nil, fmt.Errorf("rootfs target %s is already a mount point", target)
	}
	d, err := os.Open(real)
	if err != nil {
		return "", nil, fmt.Errorf("rootfs target: %w", err)
	}
	defer d.Close()
	if _, err := d.Readdirnames(1); !errors.Is(err, io.EOF) {
		if err == nil {
			err = errors.New("not empty")
		}
		return "", nil, fmt.Errorf("rootfs target %s: %w", target, err)
	}
	return real, nil, nil
}

// Teardown unmounts everything at or under target, deepest first, and
// removes target and the work dir Rootfs made for it. It is idempotent:
// a target already gone is not an error.
func Teardown(target string) error {
	target, found, err := realPath(target)
	if err != nil || !found {
		return err
	}
	// Detaching what is stacked at target takes every mount below it
	// along, without reading the host's mount table, which grows with
	// every running container. A mount below target that is not on one
	// at target keeps target from being removed, and only then is the
	// table read.
	if err := detachAt(target); err != nil {
		return err
	}
	// Only now, with nothing mounted over it, is the record ours to read.
	record := filepath.Join(target, workRecord)
	if b, err := os.ReadFile(record); err == nil {
		work := string(b)
		if !filepath.IsAbs(work) || !strings.HasPrefix(filepath.Base(work), workPrefix) {
			return fmt.Errorf("rootfs target %s: bad work dir record %q", target, work)
		}
		if err := os.RemoveAll(work); err != nil {
			return fmt.Errorf("remove overlay work dir: %w", err)
		}
		if err := os.Remove(record); err != nil {
			return fmt.Errorf("remove overlay work dir record: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read overlay work dir record: %w", err)
	}
	err = os.Remove(target)
	if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EBUSY) {
		if err := unmountAll(target); err != nil {
			return err
		}
		err = os.Remove(target)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove rootfs target: %w", err)
	}
	return nil
}

// Detach takes the rootfs mount at target off the host once the
// container's init has its own copy as its root, leaving target and its
// work dir record for Teardown. Idempotent.
func Detach(target string) error {
	target, found, err := realPath(target)
	if err != nil || !found {
		return err
	}
	return detachAt(target)
}

// detachAt detaches every mount stacked at path, each with all mounts
// below it.
func detachAt(path string) error {
	for {
		err := unix.Unmount(path, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		switch {
		case err == nil:
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			// Not a mount point (any more), or gone.
			return nil
		default:
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
}

// unmountAll detaches every mount at or under dir, deepest first, until
// mountinfo shows none (mounts can be stacked on one mount point).
func unmountAll(dir string) error {
	for {
		ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
		if err != nil {
			return fmt.Errorf("read mountinfo: %w", err)
		}
		if len(ms) == 0 {
			return nil
		}
		sort.SliceStable(ms, func(i, j int) bool { return len(ms[i].Mountpoint) > len(ms[j].Mountpoint) })
		progress := false
		for _, m := range ms {
			err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH)
			switch {
			case err == nil:
				progress = true
			case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
				// Already gone with a mount above it.
			default:
				return fmt.Errorf("unmount %s: %w", m.Mountpoint, err)
			}
		}
		if !progress {
			return fmt.Errorf("unmount %s: mounts remain: %s", dir, ms[0].Mountpoint)
		}
	}
}

// realPath resolves the absolute path of something moat mounted, for
// teardown; found is false if it is gone already.
func realPath(path string) (string, bool, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", false, fmt.Errorf("%s: %w", path, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("%s: %w", path, err)
	}
	return real, true, nil
}

// mkdirs creates dir with mode, and any missing parents, and returns the
// dirs it created, parents first; on error it removes them again. Parents
// get 0711 whatever mode is: the container's root walks through the dirs
// moat shares between containers (its mount dir, a state root's dir in it)
// to reach its rootfs, while a dir of one container's own may be closed.
func mkdirs(dir string, mode os.FileMode) ([]string, error) {
	var created []string
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil || p == filepath.Dir(p) {
			break
		}
		created = append([]string{p}, created...)
	}
	for i, p := range created {
		m := os.FileMode(0o711)
		if p == dir {
			m = mode
		}
		if err := os.Mkdir(p, m); err != nil {
			removeDirs(created[:i])
			return nil, err
		}
	}
	return created, nil
}

// removeDirs removes what mkdirs created, deepest first.
func removeDirs(created []string) {
	for i := len(created) - 1; i >= 0; i-- {
		os.Remove(created[i])
	}
}
