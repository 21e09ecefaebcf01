package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/mounts"
	"github.com/moatrt/moat/policy"
)

// probeHostNode is the policy.DeviceProbe for the host: openat2 refuses every
// symlink on the way, so a link planted in a path cannot point the check
// at one file and the mount at another.
func probeHostNode(path string) (policy.Device, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ELOOP) {
		return policy.Device{}, errors.New("reached through a symlink")
	}
	if err != nil {
		return policy.Device{}, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return policy.Device{}, err
	}
	return statDevice(&st)
}

// statHostDevice is the policy.DeviceProbe for allowlist paths.
func statHostDevice(path string) (policy.Device, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return policy.Device{}, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	n, err := statDevice(&st)
	if err != nil {
		return policy.Device{}, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

func statDevice(st *unix.Stat_t) (policy.Device, error) {
	major, minor := int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		return policy.Device{Type: 'c', Major: major, Minor: minor}, nil
	case unix.S_IFBLK:
		return policy.Device{Type: 'b', Major: major, Minor: minor}, nil
	case unix.S_IFIFO:
		return policy.Device{Type: 'p'}, nil
	case unix.S_IFDIR:
		return policy.Device{}, errors.New("a directory")
	case unix.S_IFREG:
		return policy.Device{}, errors.New("a regular file")
	}
	return policy.Device{}, errors.New("not a device")
}

// stageDevices makes the nodes of the devices libcontainer cannot give
// (see policy.ConfineDevices), owned by the container's IDs, and binds each at
// its device's path in the container.
func (r *Runtime) stageDevices(spec *specs.Spec, id string, m Mapping, devs []specs.LinuxDevice) error {
	if len(devs) == 0 {
		return nil
	}
	planned, err := policy.DeviceNodes(devs, m)
	if err != nil {
		return err
	}
	dir := filepath.Join(r.bindsDir(r.root, id), "devices")
	nodes := make([]mounts.Node, len(planned))
	sources := make([]string, len(planned))
	for i, n := range planned {
		nodes[i] = mounts.Node{
			Name: strconv.Itoa(i), Type: nodeTypes[n.Type], Major: uint32(n.Major), Minor: uint32(n.Minor),
			Perm: n.Perm, UID: int(n.UID), GID: int(n.GID),
		}
		sources[i] = filepath.Join(dir, nodes[i].Name)
	}
	if err := mounts.StageDevices(dir, nodes); err != nil {
		return err
	}
	policy.BindDevices(spec, devs, sources)
	return nil
}

// nodeTypes are the file types of policy.Device's types.
var nodeTypes = map[byte]uint32{'c': unix.S_IFCHR, 'b': unix.S_IFBLK, 'p': unix.S_IFIFO}
