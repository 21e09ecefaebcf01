package policy

import (
	"fmt"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// What moat stages for a container (ID-mapped clones of bind sources, a
// pod network namespace's sysfs, device nodes) is mounted by the
// container's init from paths of moat's own. These functions say how the
// spec names them.

// IsBind reports whether the spec mounts m as a bind mount.
func IsBind(m *specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

// IsRecursive reports whether a bind mount takes the mounts under its
// source too.
func IsRecursive(m *specs.Mount) bool {
	return slices.Contains(m.Options, "rbind")
}

// StagedBind points a bind mount at the clone of its source moat staged.
// The clone is mapped to the container's IDs already, so the mappings the
// caller gave (which could map onto another container's IDs) and its
// idmap options go.
func StagedBind(m *specs.Mount, staged string) {
	m.Source = staged
	m.UIDMappings, m.GIDMappings = nil, nil
	m.Options = slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return o == "idmap" || o == "ridmap" })
}

// StagedSysfs replaces a sysfs mount with a read-only bind of the sysfs
// moat mounted at staged, from inside a network namespace the host owns:
// the container's root may not mount it there.
func StagedSysfs(m *specs.Mount, staged string) {
	m.Type, m.Source = "bind", staged
	m.Options = []string{"rbind", "ro", "nosuid", "nodev", "noexec"}
}

// DeviceNode is a device node moat makes for a container.
type DeviceNode struct {
	Device
	Perm     uint32 // permission bits
	UID, GID uint32 // host IDs: the container's owner, mapped
}

// DeviceNodes are the nodes of the devices moat gives the container itself
// (ConfineDevices' result), owned as the spec asks, in the container's IDs.
func DeviceNodes(devs []specs.LinuxDevice, m Mapping) ([]DeviceNode, error) {
	nodes := make([]DeviceNode, 0, len(devs))
	for _, d := range devs {
		n, err := DeclaredDevice(d)
		if err != nil {
			return nil, err
		}
		var uid, gid uint32
		if d.UID != nil {
			uid = *d.UID
		}
		if d.GID != nil {
			gid = *d.GID
		}
		if uid >= m.Size || gid >= m.Size {
			return nil, fmt.Errorf("device %s: owner %d:%d is outside the container's IDs (0 to %d)", d.Path, uid, gid, m.Size-1)
		}
		perm := uint32(0o666) // libcontainer's default too
		if d.FileMode != nil {
			perm = uint32(*d.FileMode) & 0o777
		}
		nodes = append(nodes, DeviceNode{Device: n, Perm: perm, UID: m.UID + uid, GID: m.GID + gid})
	}
	return nodes, nil
}

// BindDevices binds each device's staged node (sources, in order) at the
// device's path in the container.
func BindDevices(spec *specs.Spec, devs []specs.LinuxDevice, sources []string) {
	for i, d := range devs {
		spec.Mounts = append(spec.Mounts, specs.Mount{
			Destination: d.Path, Type: "bind", Source: sources[i], Options: []string{"bind"},
		})
	}
}
