package mounts

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/idmap"
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
		return fmt.Errorf("stage sysfs of network namespace %s: %w", netns, err)
	}
	defer tree.Close()
	if err := attach(tree, target, true); err != nil {
		return fmt.Errorf("stage sysfs of network namespace %s: %w", netns, err)
	}
	return nil
}

// sysfsOf returns a detached sysfs mount made in the network namespace at
// netns: sysfs shows the network devices of its mounter's namespace.
func sysfsOf(netns string) (*os.File, error) {
	var tree *os.File
	err := idmap.InNetns(netns, func() error {
		fs, err := unix.Fsopen("sysfs", unix.FSOPEN_CLOEXEC)
		if err != nil {
			return fmt.Errorf("fsopen sysfs: %w", err)
		}
		defer unix.Close(fs)
		if err := unix.FsconfigCreate(fs); err != nil {
			return fmt.Errorf("create sysfs: %w", err)
		}
		attrs := unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC
		m, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, attrs)
		if err != nil {
			return fmt.Errorf("fsmount sysfs: %w", err)
		}
		tree = os.NewFile(uintptr(m), "sysfs")
		return nil
	})
	if err != nil && tree != nil {
		tree.Close()
		tree = nil
	}
	return tree, err
}
