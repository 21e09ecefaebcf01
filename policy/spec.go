package policy

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Mapping is the container's single ID range: container IDs 0..Size-1 map
// to host UID..UID+Size-1 and GID..GID+Size-1.
type Mapping struct {
	UID, GID, Size uint32
}

// IsolateUserns puts the container into a user namespace of its own with the
// given mapping, or into joinUserns (another moat container's, whose mapping
// m is) when it joins that container's namespaces. Whatever the caller asked
// for (--userns=host, its own mappings, a path to another namespace) is
// overridden: the mapping is the isolation boundary and not the caller's to
// choose. Cgroup and time namespaces are always the container's own; the
// time namespace starts the boot clock at zero, so /proc/uptime is the
// container's: bootSecs is the host's boot clock in whole seconds.
func IsolateUserns(spec *specs.Spec, m Mapping, joinUserns string, bootSecs int64) {
	nss := spec.Linux.Namespaces[:0]
	for _, ns := range spec.Linux.Namespaces {
		switch ns.Type {
		case specs.UserNamespace, specs.CgroupNamespace, specs.TimeNamespace:
		default:
			nss = append(nss, ns)
		}
	}
	spec.Linux.Namespaces = append(nss,
		specs.LinuxNamespace{Type: specs.UserNamespace, Path: joinUserns},
		specs.LinuxNamespace{Type: specs.CgroupNamespace},
		specs.LinuxNamespace{Type: specs.TimeNamespace})
	spec.Linux.UIDMappings, spec.Linux.GIDMappings = nil, nil
	if joinUserns == "" {
		// libcontainer reads the mapping of a joined namespace itself.
		spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: m.UID, Size: m.Size}}
		spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: m.GID, Size: m.Size}}
	}
	clampPingGroupRange(spec, m.Size)
	resetBoottime(spec, bootSecs)
}

// resetBoottime offsets the container's boot clock by the host's uptime.
// The kernel refuses an offset that makes the clock negative when it is
// set; the clock only grows until then, so whole seconds are safe.
func resetBoottime(spec *specs.Spec, bootSecs int64) {
	if spec.Linux.TimeOffsets == nil {
		spec.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{}
	}
	spec.Linux.TimeOffsets["boottime"] = specs.LinuxTimeOffset{Secs: -bootSecs}
}
