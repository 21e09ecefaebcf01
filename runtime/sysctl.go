package runtime

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/idmap"
)

// netSysctls writes the spec's net.* sysctls into the network namespace at
// netns, which the host's user namespace owns (a pod's made by the CNI
// plugin, podman's /run/netns/netns-...), and takes them out of the spec.
// The kernel lets only the root of a network namespace's owner write its
// sysctls: the container's init, root of its own user namespace, would be
// refused where runc's init, real root, succeeds. The namespace is the
// container's (the host's was refused before), so moat writes them for it,
// and opens the ports below 1024 there if the container may bind them.
func netSysctls(spec *specs.Spec, netns string, m Mapping) error {
	if netns == "" || spec.Linux == nil {
		return nil
	}
	var keys []string
	set := map[string]bool{}
	for key := range spec.Linux.Sysctl {
		if p := sysctlPath(key); strings.HasPrefix(p, "net/") {
			keys = append(keys, key)
			set[p] = true
		}
	}
	sort.Strings(keys)
	values := make([]string, len(keys))
	for i, key := range keys {
		v := spec.Linux.Sysctl[key]
		if sysctlPath(key) == "net/ipv4/ping_group_range" {
			var err error
			if v, err = pingGroupRange(v, m); err != nil {
				return fmt.Errorf("sysctl %q: %w", key, err)
			}
		}
		values[i] = v
	}
	// The kernel checks CAP_NET_BIND_SERVICE in the network namespace's
	// owner, where the container has no capability: a container given
	// it could not bind ports below 1024 (a web server on port 80) as
	// under runc. Opening those ports to the namespace's users, as docker
	// does for every container, gives it back. A value in the spec wins.
	const portStart = "net/ipv4/ip_unprivileged_port_start"
	if !set[portStart] && mayHold(spec, "CAP_NET_BIND_SERVICE") {
		keys = append(keys, portStart)
		values = append(values, "0")
	}
	if len(keys) == 0 {
		return nil
	}
	err := idmap.InNetns(netns, func() error {
		// Looked up from this thread, /proc/sys/net is the namespace's.
		dir, err := unix.Open("/proc/sys/net", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(dir)
		for i, key := range keys {
			if err := writeSysctl(dir, strings.TrimPrefix(sysctlPath(key), "net/"), values[i]); err != nil {
				return fmt.Errorf("sysctl %q: %w", key, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write sysctls of network namespace %s: %w", netns, err)
	}
	for _, key := range keys {
		delete(spec.Linux.Sysctl, key)
	}
	return nil
}

// writeSysctl writes value to the file at rel beneath dir, which it may not
// leave.
func writeSysctl(dir int, rel, value string) error {
	fd, err := unix.Openat2(dir, rel, &unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_TRUNC | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(value)); err != nil {
		return fmt.Errorf("write %q: %w", value, err)
	}
	return nil
}

// mayHold reports whether a process of the container may ever hold the
// capability: whether it is in the bounding set.
func mayHold(spec *specs.Spec, capability string) bool {
	return spec.Process != nil && spec.Process.Capabilities != nil &&
		slices.Contains(spec.Process.Capabilities.Bounding, capability)
}

// sysctlPath is the path under /proc/sys of a sysctl key, given as
// "net.ipv4.ip_forward" or "net/ipv4/ip_forward". As with sysctl(8), in the
// dotted form a slash stands for a dot within a name
// ("net.ipv4.conf.eth0/100.rp_filter").
func sysctlPath(key string) string {
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

// pingGroupRange turns net.ipv4.ping_group_range, "low high" in the
// container's gids, into host gids: the kernel reads the range in the
// writer's user namespace, here the host's. The part of the range the
// container has no gids for is cut off; with none left, no group may ping
// ("1 0", the kernel's default).
func pingGroupRange(value string, m Mapping) (string, error) {
	f := strings.Fields(value)
	if len(f) != 2 {
		return "", fmt.Errorf("%q: want two group IDs, \"low high\"", value)
	}
	low, err := strconv.ParseUint(f[0], 10, 32)
	if err != nil {
		return "", fmt.Errorf("%q: %w", value, err)
	}
	high, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return "", fmt.Errorf("%q: %w", value, err)
	}
	if low > high || low >= uint64(m.Size) {
		return "1 0", nil
	}
	high = min(high, uint64(m.Size)-1)
	return fmt.Sprintf("%d %d", uint64(m.GID)+low, uint64(m.GID)+high), nil
}
