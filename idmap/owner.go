package idmap

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// nsGetUserns is NS_GET_USERNS, _IO(0xb7, 0x1): it returns the user
// namespace that owns a namespace.
const nsGetUserns = 0xb701

// nsGetNstype is NS_GET_NSTYPE, _IO(0xb7, 0x3): it returns the CLONE_NEW*
// flag of a namespace's type.
const nsGetNstype = 0xb703

// NSID identifies a namespace: the device and inode of its nsfs file.
type NSID struct{ Dev, Ino uint64 }

// NamespaceID returns the identity of the namespace at path (an nsfs file
// such as /proc/<pid>/ns/net, or a bind mount of one).
func NamespaceID(path string) (NSID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return NSID{}, err
	}
	return NSID{Dev: st.Dev, Ino: st.Ino}, nil
}

// Namespace is what the kernel says of a namespace file.
type Namespace struct {
	// Type is the namespace's CLONE_NEW* flag.
	Type int
	ID   NSID
	// Owner is the user namespace that owns it; zero for a user
	// namespace, whose owner (its parent) may be out of reach.
	Owner NSID
	// Pinned is true for a file that holds the namespace by itself (a
	// bind mount of an nsfs file, as ip netns and CNI make), false for a
	// /proc/<pid>/ns link, which names a process's.
	Pinned bool
}

// InspectNamespace opens the namespace at path once and asks the kernel
// its type, identity and owner; an error if path is not a namespace.
func InspectNamespace(path string) (Namespace, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Namespace{}, err
	}
	defer unix.Close(fd)
	var ns Namespace
	if ns.Type, err = unix.IoctlRetInt(fd, nsGetNstype); err != nil {
		// ENOTTY: the ioctl is nsfs's, so the file is no namespace.
		return Namespace{}, fmt.Errorf("%s is not a namespace: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Namespace{}, err
	}
	ns.ID = NSID{Dev: st.Dev, Ino: st.Ino}
	if ns.Type != unix.CLONE_NEWUSER {
		owner, err := unix.IoctlRetInt(fd, nsGetUserns)
		if err != nil {
			return Namespace{}, fmt.Errorf("owner of namespace %s: %w", path, err)
		}
		err = unix.Fstat(owner, &st)
		unix.Close(owner)
		if err != nil {
			return Namespace{}, err
		}
		ns.Owner = NSID{Dev: st.Dev, Ino: st.Ino}
	}
	var lst unix.Stat_t
	if err := unix.Lstat(path, &lst); err != nil {
		return Namespace{}, err
	}
	ns.Pinned = lst.Mode&unix.S_IFMT != unix.S_IFLNK && lst.Dev == ns.ID.Dev
	return ns, nil
}

// FindUserns returns a process in the user namespace id, trying hint first
// (0 for none) and then every process on the host.
func FindUserns(id NSID, hint int) (int, error) {
	in := func(pid int) bool {
		got, err := NamespaceID(fmt.Sprintf("/proc/%d/ns/user", pid))
		return err == nil && got == id
	}
	if hint > 0 && in(hint) {
		return hint, nil
	}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		if pid, err := strconv.Atoi(d.Name()); err == nil && in(pid) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no process is in user namespace %d:%d", id.Dev, id.Ino)
}

// PidOfNSPath returns the pid in a /proc/<pid>/ns/<kind> path, or 0.
func PidOfNSPath(path string) int {
	parts := strings.Split(filepath.Clean(path), "/")
	if len(parts) == 5 && parts[1] == "proc" && parts[3] == "ns" {
		if pid, err := strconv.Atoi(parts[2]); err == nil {
			return pid
		}
	}
	return 0
}

// ReadMappings returns the uid and gid mappings of process pid's user
// namespace.
func ReadMappings(pid int) (uids, gids []Mapping, err error) {
	if uids, err = readMap(fmt.Sprintf("/proc/%d/uid_map", pid)); err != nil {
		return nil, nil, err
	}
	if gids, err = readMap(fmt.Sprintf("/proc/%d/gid_map", pid)); err != nil {
		return nil, nil, err
	}
	return uids, gids, nil
}

func readMap(path string) ([]Mapping, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ms []Mapping
	s := bufio.NewScanner(f)
	for s.Scan() {
		var m Mapping
		if _, err := fmt.Sscan(s.Text(), &m.ContainerID, &m.HostID, &m.Size); err != nil {
			return nil, fmt.Errorf("%s: %q: %w", path, s.Text(), err)
		}
		ms = append(ms, m)
	}
	return ms, s.Err()
}
