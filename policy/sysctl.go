package policy

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const pingGroupRange = "net/ipv4/ping_group_range"

// clampPingGroupRange keeps net.ipv4.ping_group_range inside the mapped
// groups: docker asks for "0 2147483647", which the kernel refuses in a user
// namespace where only Size groups exist. A value it cannot read is left
// for the kernel to report.
func clampPingGroupRange(spec *specs.Spec, size uint32) {
	for key, v := range spec.Linux.Sysctl {
		if SysctlPath(key) != pingGroupRange {
			continue
		}
		if low, high, err := pingGroups(v, size); err == nil {
			spec.Linux.Sysctl[key] = formatGroups(low, high, 0)
		}
	}
}

// pingGroups reads net.ipv4.ping_group_range, "low high" in the
// container's gids, and cuts off the part of the range the container has
// no gids for; with none left, low > high: no group may ping.
func pingGroups(value string, size uint32) (low, high uint64, err error) {
	f := strings.Fields(value)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("%q: want two group IDs, \"low high\"", value)
	}
	if low, err = strconv.ParseUint(f[0], 10, 32); err != nil {
		return 0, 0, fmt.Errorf("%q: %w", value, err)
	}
	if high, err = strconv.ParseUint(f[1], 10, 32); err != nil {
		return 0, 0, fmt.Errorf("%q: %w", value, err)
	}
	if low > high || low >= uint64(size) {
		return 1, 0, nil
	}
	return low, min(high, uint64(size)-1), nil
}

// formatGroups writes a ping group range, moved to start at gid; an empty
// range is the kernel's default, "1 0".
func formatGroups(low, high uint64, gid uint32) string {
	if low > high {
		return "1 0"
	}
	return fmt.Sprintf("%d %d", uint64(gid)+low, uint64(gid)+high)
}

// Sysctl is a sysctl moat writes itself.
type Sysctl struct {
	// Key is the spec's key ("" for one moat adds); Path is the file
	// under /proc/sys.
	Key, Path, Value string
}

// HostNetSysctls are the writes moat makes for a container that joins a
// network namespace the host's user namespace owns (a pod's made by the
// CNI plugin, podman's /run/netns/netns-...): the spec's net.* sysctls,
// which the kernel lets only the root of the namespace's owner write, so
// the container's init, root of its own user namespace, would be refused
// where runc's init, real root, succeeds. Values are as the host's user
// namespace reads them: ping_group_range in host gids. The caller takes
// the keys out of the spec once written.
func HostNetSysctls(spec *specs.Spec, m Mapping) ([]Sysctl, error) {
	var out []Sysctl
	set := map[string]bool{}
	for key, v := range spec.Linux.Sysctl {
		p := SysctlPath(key)
		if !strings.HasPrefix(p, "net/") {
			continue
		}
		if p == pingGroupRange {
			low, high, err := pingGroups(v, m.Size)
			if err != nil {
				return nil, fmt.Errorf("sysctl %q: %w", key, err)
			}
			v = formatGroups(low, high, m.GID)
		}
		out = append(out, Sysctl{Key: key, Path: p, Value: v})
		set[p] = true
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	// The kernel checks CAP_NET_BIND_SERVICE in the network namespace's
	// owner, where the container has no capability: a container given
	// it could not bind ports below 1024 (a web server on port 80) as
	// under runc. Opening those ports to the namespace's users, as docker
	// does for every container, gives it back. A value in the spec wins.
	const portStart = "net/ipv4/ip_unprivileged_port_start"
	if !set[portStart] && mayHold(spec, "CAP_NET_BIND_SERVICE") {
		out = append(out, Sysctl{Path: portStart, Value: "0"})
	}
	return out, nil
}

// mayHold reports whether a process of the container may ever hold the
// capability: whether it is in the bounding set.
func mayHold(spec *specs.Spec, capability string) bool {
	return spec.Process != nil && spec.Process.Capabilities != nil &&
		slices.Contains(spec.Process.Capabilities.Bounding, capability)
}

// SysctlPath is the path under /proc/sys of a sysctl key, given as
// "net.ipv4.ip_forward" or "net/ipv4/ip_forward". As with sysctl(8), in the
// dotted form a slash stands for a dot within a name
// ("net.ipv4.conf.eth0/100.rp_filter").
func SysctlPath(key string) string {
	if i := strings.IndexAny(key, "./"); i >= 0 && key[i] == '/' {
		return key
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, key)
}
