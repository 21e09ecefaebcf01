package mounts

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// StageSysfs mounts, at target (created), a read-only sysfs that shows the
// network namespace at netns. A container cannot mount that sysfs itself
// when another user namespace owns the network namespace, as the host's owns
// a pod's network namespace made by the CNI plugin: the kernel wants
// CAP_SYS_ADMIN over the network namespace's owner. The caller binds the
// staged sysfs into the container instead. On error nothing is left.
func StageSysfs(netns, target string) error {
	tree, err := sysfsOf(netns)
	if err != nil {
		return fmt.Errorf("sysfs of network namespace %s: %w", netns, err)
	}
	defer tree.Close()
	if err := attach(tree, target, true); err != nil {
		return fmt.Errorf("sysfs of network namespace %s: %w", netns, err)
	}
	return nil
}

// sysfsOf returns a detached sysfs mount made in the network namespace at
// netns: sysfs shows the network devices of its mounter's namespace.
func sysfsOf(netns string) (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	done := make(chan result, 1)
	go func() {
		// The thread joins another network namespace and is never
		// unlocked, so Go ends it with the goroutine instead of reusing it.
		runtime.LockOSThread()
		ns, err := unix.Open(netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer unix.Close(ns)
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			done <- result{err: fmt.Errorf("unshare: %w", err)}
			return
		}
		if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
			done <- result{err: fmt.Errorf("setns: %w", err)}
			return
		}
		fs, err := unix.Fsopen("sysfs", unix.FSOPEN_CLOEXEC)
		if err != nil {
			done <- result{err: fmt.Errorf("fsopen sysfs: %w", err)}
			return
		}
		defer unix.Close(fs)
		if err := unix.FsconfigCreate(fs); err != nil {
			done <- result{err: fmt.Errorf("create sysfs: %w", err)}
			return
		}
		attrs := unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC
		m, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, attrs)
		if err != nil {
			done <- result{err: fmt.Errorf("fsmount sysfs: %w", err)}
			return
		}
		done <- result{f: os.NewFile(uintptr(m), "sysfs")}
	}()
	r := <-done
	return r.f, r.err
}
