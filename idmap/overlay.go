package idmap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Overlay describes an overlay mount by its layers.
type Overlay struct {
	// Lower are the read-only layers, top first, as in lowerdir=.
	Lower []string
	// Upper is the writable layer and Work overlay's work directory; they
	// must be on one mount. Both empty makes a read-only overlay, which
	// the kernel allows only with two lower layers or more.
	Upper, Work string
	// Options are further options, "key=value" or "flag" (index=off,
	// redirect_dir=on, metacopy=on, volatile, userxattr, ...).
	Options []string
}

// MountOverlay mounts at target an overlay of o's layers, each ID-mapped
// with the given mappings, on behalf of the mappings' root (container ID 0).
//
// Overlay records the credentials of the task that creates it and does its
// upper-layer work with them. Created by a task whose uid/gid are the
// container root's host IDs, files it writes go through the ID-mapped upper
// and land on disk with the container's own IDs (0, 1000, ...), while the
// task keeps CAP_SYS_ADMIN of the initial namespace, so trusted.overlay.*
// xattrs (opaque dirs, redirects) and whiteouts keep working.
//
// Layers are passed to the kernel as file descriptors of detached ID-mapped
// trees (Linux 6.13 and later), so no mount of a layer is ever visible.
func MountOverlay(target string, o Overlay, uids, gids []Mapping) error {
	if len(o.Lower) == 0 {
		return errors.New("overlay needs at least one lower layer")
	}
	if (o.Upper == "") != (o.Work == "") {
		return fmt.Errorf("overlay needs both an upper and a work dir or neither (upper %q, work %q)", o.Upper, o.Work)
	}
	if o.Upper == "" && len(o.Lower) < 2 {
		return errors.New("a read-only overlay needs at least two lower layers")
	}
	for _, opt := range o.Options {
		switch key, _, _ := strings.Cut(opt, "="); key {
		case "lowerdir", "lowerdir+", "upperdir", "workdir", "datadir+":
			return fmt.Errorf("overlay option %q: layers go in Lower, Upper and Work", opt)
		}
	}
	uid, err := rootID(uids)
	if err != nil {
		return fmt.Errorf("uid map: %w", err)
	}
	gid, err := rootID(gids)
	if err != nil {
		return fmt.Errorf("gid map: %w", err)
	}
	userns, err := NewUserns(uids, gids)
	if err != nil {
		return err
	}
	defer userns.Close()

	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	l := layers{options: o.Options}
	for _, p := range o.Lower {
		t, err := CloneMapped(p, userns, false)
		if err != nil {
			return fmt.Errorf("lower layer: %w", err)
		}
		files = append(files, t)
		l.lower = append(l.lower, t)
	}
	if o.Upper != "" {
		tree, upper, work, err := upperAndWork(o.Upper, o.Work, userns)
		if err != nil {
			return err
		}
		files = append(files, tree, upper, work)
		l.upper, l.work = upper, work
	}

	errc := make(chan error, 1)
	go func() {
		// The credentials of this thread change and are never changed
		// back: it stays locked, so Go ends it with the goroutine.
		runtime.LockOSThread()
		errc <- l.mountAs(target, uid, gid)
	}()
	return <-errc
}

// rootID is the host ID that container ID 0 maps to.
func rootID(ms []Mapping) (uint32, error) {
	for _, m := range ms {
		if m.ContainerID == 0 && m.Size > 0 {
			return m.HostID, nil
		}
	}
	return 0, errors.New("no mapping for ID 0")
}

// upperAndWork opens the upper and work dirs in one ID-mapped clone of the
// mount they are on: overlay requires them to share a mount. The clone
// (returned first) must stay open until the overlay is created: closing it
// dissolves the detached mount and the kernel then refuses its paths.
func upperAndWork(upper, work string, userns *os.File) (tree, u, w *os.File, err error) {
	// Resolve symlinks first: one in the path below the clone would lead
	// out of it, to a directory that is not ID-mapped.
	if upper, err = filepath.EvalSymlinks(upper); err != nil {
		return nil, nil, nil, fmt.Errorf("overlay upper dir: %w", err)
	}
	if work, err = filepath.EvalSymlinks(work); err != nil {
		return nil, nil, nil, fmt.Errorf("overlay work dir: %w", err)
	}
	if upper, err = filepath.Abs(upper); err != nil {
		return nil, nil, nil, fmt.Errorf("overlay upper dir: %w", err)
	}
	if work, err = filepath.Abs(work); err != nil {
		return nil, nil, nil, fmt.Errorf("overlay work dir: %w", err)
	}
	um, err := mountID(upper)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("overlay upper dir: %w", err)
	}
	wm, err := mountID(work)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("overlay work dir: %w", err)
	}
	parent := commonDir(upper, work)
	pm, err := mountID(parent)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("overlay upper dir: %w", err)
	}
	if um != wm || um != pm {
		return nil, nil, nil, fmt.Errorf("overlay upper dir %s and work dir %s must be on the same mount", upper, work)
	}
	tree, err = CloneMapped(parent, userns, false)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("upper layer: %w", err)
	}
	defer func() {
		if err != nil {
			tree.Close()
		}
	}()
	open := func(p string) (*os.File, error) {
		rel, err := filepath.Rel(parent, p)
		if err != nil {
			return nil, err
		}
		fd, err := unix.Openat2(int(tree.Fd()), rel, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_XDEV,
		})
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", p, err)
		}
		return os.NewFile(uintptr(fd), p), nil
	}
	if u, err = open(upper); err != nil {
		return nil, nil, nil, fmt.Errorf("overlay upper dir: %w", err)
	}
	if w, err = open(work); err != nil {
		u.Close()
		return nil, nil, nil, fmt.Errorf("overlay work dir: %w", err)
	}
	return tree, u, w, nil
}

// layers are the open, ID-mapped layers of an overlay.
type layers struct {
	lower       []*os.File
	upper, work *os.File
	options     []string
}

// mountAs creates the overlay as host uid/gid and mounts it at target. It
// must run on a locked thread that is thrown away afterwards.
func (l *layers) mountAs(target string, uid, gid uint32) error {
	// Keep the capabilities (CAP_SYS_ADMIN, CAP_DAC_OVERRIDE, CAP_MKNOD...)
	// across the change of uid.
	if err := unix.Prctl(unix.PR_SET_SECUREBITS, secbitNoSetuidFixup, 0, 0, 0); err != nil {
		return fmt.Errorf("keep capabilities: %w", err)
	}
	// Raw system calls change this thread only; syscall.Setresuid and
	// friends change every thread of the process.
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
		return fmt.Errorf("drop supplementary groups: %w", e)
	}
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
	for _, f := range l.lower {
		if err := unix.FsconfigSetFd(fsfd, "lowerdir+", int(f.Fd())); err != nil {
			return fmt.Errorf("overlay lower layer %s: %w%s", f.Name(), err, fsLog(fsfd))
		}
	}
	if l.upper != nil {
		if err := unix.FsconfigSetFd(fsfd, "upperdir", int(l.upper.Fd())); err != nil {
			return fmt.Errorf("overlay upper dir %s: %w%s", l.upper.Name(), err, fsLog(fsfd))
		}
		if err := unix.FsconfigSetFd(fsfd, "workdir", int(l.work.Fd())); err != nil {
			return fmt.Errorf("overlay work dir %s: %w%s", l.work.Name(), err, fsLog(fsfd))
		}
	}
	for _, opt := range l.options {
		var err error
		if key, val, ok := strings.Cut(opt, "="); ok {
			err = unix.FsconfigSetString(fsfd, key, val)
		} else {
			err = unix.FsconfigSetFlag(fsfd, key)
		}
		if err != nil {
			return fmt.Errorf("overlay option %s: %w%s", opt, err, fsLog(fsfd))
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("create overlay: %w%s", err, fsLog(fsfd))
	}
	// nodev for the reason setIdmap gives.
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return fmt.Errorf("fsmount overlay: %w%s", err, fsLog(fsfd))
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount overlay to %s: %w", target, err)
	}
	return nil
}

// fsLog returns what the filesystem said about a failed fsconfig (the
// kernel keeps the reason there, e.g. which layer it refused and why),
// formatted to follow an error.
func fsLog(fsfd int) string {
	var msgs []string
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break
		}
		msg := strings.TrimSpace(string(buf[:n]))
		// Each message is "<e|w|i> <source>: <text>".
		if len(msg) > 2 && msg[1] == ' ' {
			msg = msg[2:]
		}
		msgs = append(msgs, msg)
	}
	if len(msgs) == 0 {
		return ""
	}
	return " (" + strings.Join(msgs, "; ") + ")"
}

// secbitNoSetuidFixup keeps capabilities across a change of uid
// (SECBIT_NO_SETUID_FIXUP in <linux/securebits.h>).
const secbitNoSetuidFixup = 1 << 2
