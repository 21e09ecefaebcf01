package runtime

import (
	"cmp"
	"fmt"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/idmap"
	"github.com/moatrt/moat/policy"
)

// netSysctls writes the sysctls the policy gives moat to write
// (policy.HostNetSysctls) into the network namespace at netns, which the
// host's user namespace owns, and takes them out of the spec. The
// namespace is the container's (the host's was refused before).
func netSysctls(spec *specs.Spec, netns string, m Mapping) error {
	if netns == "" || spec.Linux == nil {
		return nil
	}
	writes, err := policy.HostNetSysctls(spec, m)
	if err != nil || len(writes) == 0 {
		return err
	}
	err = idmap.InNetns(netns, func() error {
		// Looked up from this thread, /proc/sys/net is the namespace's.
		dir, err := unix.Open("/proc/sys/net", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(dir)
		for _, w := range writes {
			if err := writeSysctl(dir, strings.TrimPrefix(w.Path, "net/"), w.Value); err != nil {
				return fmt.Errorf("sysctl %q: %w", cmp.Or(w.Key, w.Path), err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write sysctls of network namespace %s: %w", netns, err)
	}
	for _, w := range writes {
		delete(spec.Linux.Sysctl, w.Key)
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
