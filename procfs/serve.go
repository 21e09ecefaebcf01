package procfs

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Views are the files one FUSE filesystem serves: meminfo, cpuinfo, stat,
// swaps and online (for /sys/devices/system/cpu/online), each made when
// it is opened from the cgroup of the process that opens it, as LXCFS
// does. Every container binds the same files; each sees its own figures,
// and a container nested in it (a cgroup below) its own.
type Views struct {
	host Host
	// cgroupOf finds a reader's cgroup; tests give their own.
	cgroupOf func(pid int) (*Cgroup, error)
}

// NewViews makes the views of the host h, whose cgroup hierarchies are
// read now.
func NewViews(h Host) (*Views, error) {
	mounts, err := CgroupMounts()
	if err != nil {
		return nil, err
	}
	return &Views{host: h, cgroupOf: func(pid int) (*Cgroup, error) { return h.CgroupOf(pid, mounts) }}, nil
}

// viewFiles are the files of the views, in the order of their node IDs.
var viewFiles = []string{"cpuinfo", "meminfo", "online", "stat", "swaps"}

// File makes file name for the process pid.
func (v *Views) File(pid int, name string) ([]byte, error) {
	cg, err := v.cgroupOf(pid)
	if err != nil {
		return nil, fmt.Errorf("cgroup of reader %d: %w", pid, err)
	}
	switch name {
	case "meminfo":
		return v.host.Meminfo(cg)
	case "swaps":
		return v.host.Swaps(cg)
	case "cpuinfo", "stat", "online":
		cpus, err := v.host.CPUs(cg)
		if err != nil {
			return nil, err
		}
		switch name {
		case "cpuinfo":
			return v.host.Cpuinfo(cpus)
		case "stat":
			return v.host.Stat(cpus)
		}
		return Online(len(cpus)), nil
	}
	return nil, fmt.Errorf("%s: %w", name, syscall.ENOENT)
}

// viewTargets are where a container sees each file of the views.
var viewTargets = map[string]string{
	"cpuinfo": "/proc/cpuinfo",
	"meminfo": "/proc/meminfo",
	"online":  "/sys/devices/system/cpu/online",
	"stat":    "/proc/stat",
	"swaps":   "/proc/swaps",
}

// Binds are the read-only bind mounts that show a container the views
// mounted at dir, over the kernel's files: those of /proc if the
// container mounts a proc at /proc, and of /sys if it mounts a sysfs at
// /sys. They go after the spec's own mounts.
func Binds(dir string, spec []specs.Mount) []specs.Mount {
	has := map[string]bool{}
	for _, m := range spec {
		if m.Destination == "/proc" && m.Type == "proc" || m.Destination == "/sys" && m.Type == "sysfs" {
			has[m.Destination] = true
		}
	}
	var out []specs.Mount
	for _, f := range viewFiles {
		dst := viewTargets[f]
		if !has["/"+strings.SplitN(dst, "/", 3)[1]] {
			continue
		}
		out = append(out, specs.Mount{
			Destination: dst, Type: "bind", Source: filepath.Join(dir, f),
			Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"},
		})
	}
	return out
}
