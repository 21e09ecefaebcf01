package idmap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"unsafe"

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
// into u, on behalf of u's root (container ID 0).
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
func MountOverlay(target string, o Overlay, u *Userns) error {
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
	uid, err := rootID(u.UIDs)
	if err != nil {
		return fmt.Errorf("uid map: %w", err)
	}
	gid, err := rootID(u.GIDs)
	if err != nil {
		return fmt.Errorf("gid map: %w", err)
	}
	userns, err := u.File()
	if err != nil {
		return err
	}

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
		// The thread's credentials change for the mount and are changed
		// back before Go may run anything else on it. It can be the
		// process's main thread, which Go never ends and whose
		// credentials are the ones the process shows in /proc/self.
		runtime.LockOSThread()
		restored, err := asUser(uid, gid, func() error { return l.mount(target) })
		if restored {
			runtime.UnlockOSThread()
		}
		// Otherwise the thread stays locked and Go ends it with this
		// goroutine.
		errc <- err
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

// asUser runs fn on the calling, locked thread with uid and gid as its IDs
// and no supplementary groups, keeping its capabilities, then gives the
// thread its own credentials back. It reports whether it did; a thread that
// could not be restored must never run anything else.
func asUser(uid, gid uint32, fn func() error) (restored bool, err error) {
	secbits, err := unix.PrctlRetInt(unix.PR_GET_SECUREBITS, 0, 0, 0, 0)
	if err != nil {
		return true, fmt.Errorf("read securebits: %w", err)
	}
	ruid, euid, suid := unix.Getresuid()
	rgid, egid, sgid := unix.Getresgid()
	groups, err := unix.Getgroups()
	if err != nil {
		return true, fmt.Errorf("read supplementary groups: %w", err)
	}
	defer func() {
		// The uid first: the securebit that keeps the capabilities
		// across it is still set, and setting the rest needs them.
		var errs []error
		if err := setresuid(ruid, euid, suid); err != nil {
			errs = append(errs, err)
		}
		if err := setresgid(rgid, egid, sgid); err != nil {
			errs = append(errs, err)
		}
		if err := setgroups(groups); err != nil {
			errs = append(errs, err)
		}
		if err := unix.Prctl(unix.PR_SET_SECUREBITS, uintptr(secbits), 0, 0, 0); err != nil {
			errs = append(errs, fmt.Errorf("restore securebits: %w", err))
		}
		if len(errs) > 0 {
			restored = false
			err = errors.Join(err, fmt.Errorf("restore the thread's credentials: %w", errors.Join(errs...)))
		}
	}()

	// Keep the capabilities (CAP_SYS_ADMIN, CAP_DAC_OVERRIDE, CAP_MKNOD...)
	// across the change of uid.
	if err := unix.Prctl(unix.PR_SET_SECUREBITS, uintptr(secbits|secbitNoSetuidFixup), 0, 0, 0); err != nil {
		return true, fmt.Errorf("keep capabilities: %w", err)
	}
	if err := setgroups(nil); err != nil {
		return true, err
	}
	if err := setresgid(int(gid), int(gid), int(gid)); err != nil {
		return true, err
	}
	if err := setresuid(int(uid), int(uid), int(uid)); err != nil {
		return true, err
	}
	return true, fn()
}

// Raw system calls change the calling thread only; syscall.Setresuid and
// friends change every thread of the process.

func setresuid(r, e, s int) error {
	if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(r), uintptr(e), uintptr(s)); errno != 0 {
		return fmt.Errorf("setresuid %d %d %d: %w", r, e, s, errno)
	}
	return nil
}

func setresgid(r, e, s int) error {
	if _, _, errno := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(r), uintptr(e), uintptr(s)); errno != 0 {
		return fmt.Errorf("setresgid %d %d %d: %w", r, e, s, errno)
	}
	return nil
}

func setgroups(groups []int) error {
	list := make([]uint32, len(groups)+1) // never empty, for &list[0]
	for i, g := range groups {
		list[i] = uint32(g)
	}
	_, _, errno := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), uintptr(unsafe.Pointer(&list[0])), 0)
	if errno != 0 {
		return fmt.Errorf("setgroups %v: %w", groups, errno)
	}
	return nil
}

// mount creates the overlay and mounts it at target, with the credentials
// of the calling thread.
func (l *layers) mount(target string) error {
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
