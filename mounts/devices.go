package mounts

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Node is a device node to make for a container.
type Node struct {
	Name         string // file name in the staging dir
	Type         uint32 // unix.S_IFCHR, unix.S_IFBLK or unix.S_IFIFO
	Major, Minor uint32
	Perm         uint32 // permission bits
	UID, GID     int    // host IDs: the container's IDs, mapped
}

// StageDevices makes the given device nodes in dir, on a tmpfs of their
// own, owned by the container's IDs, for the container to bind. A device
// a container is given must open for it: the host's node belongs to host
// root (unmapped in the container) with the host's modes, and every other
// mount of the container is nodev. So the tmpfs is mounted by moat in the
// host's user namespace without nodev (but nosuid and noexec), and holds
// these nodes only; which devices open is still up to the devices cgroup.
// dir is created and must not exist; on error nothing is left.
func StageDevices(dir string, nodes []Node) (retErr error) {
	fs, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("stage devices: fsopen tmpfs: %w", err)
	}
	defer unix.Close(fs)
	for _, kv := range [][2]string{{"mode", "0711"}, {"size", "64k"}, {"nr_inodes", "1024"}} {
		if err := unix.FsconfigSetString(fs, kv[0], kv[1]); err != nil {
			return fmt.Errorf("stage devices: tmpfs %s=%s: %w", kv[0], kv[1], err)
		}
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return fmt.Errorf("stage devices: create tmpfs: %w", err)
	}
	m, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return fmt.Errorf("stage devices: fsmount tmpfs: %w", err)
	}
	tree := os.NewFile(uintptr(m), "devices")
	defer tree.Close()
	if err := attach(tree, dir, true); err != nil {
		return fmt.Errorf("stage devices: %w", err)
	}
	defer func() {
		if retErr != nil {
			_ = TeardownStaged(dir)
		}
	}()
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("stage devices: %w", err)
	}
	defer unix.Close(root)
	for _, n := range nodes {
		if n.Name == "" || n.Name != filepath.Base(n.Name) || n.Name == "." || n.Name == ".." {
			return fmt.Errorf("stage devices: bad node name %q", n.Name)
		}
		if err := makeNode(root, n); err != nil {
			return fmt.Errorf("stage device %s: %w", n.Name, err)
		}
	}
	return nil
}

func makeNode(dir int, n Node) error {
	switch n.Type {
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
	default:
		return errors.New("not a device or FIFO type")
	}
	if err := unix.Mknodat(dir, n.Name, n.Type|0o600, int(unix.Mkdev(n.Major, n.Minor))); err != nil {
		return fmt.Errorf("mknod: %w", err)
	}
	if err := unix.Fchownat(dir, n.Name, n.UID, n.GID, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	// After the chown, which may clear mode bits; the umask does not apply.
	if err := unix.Fchmodat(dir, n.Name, n.Perm&0o777, 0); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return nil
}
