package procfs

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Views are the files one FUSE filesystem serves, in a directory per
// container: meminfo, cpuinfo, stat, swaps and online (for
// /sys/devices/system/cpu/online), each made when it is opened from the
// cgroup of the process that opens it, as LXCFS does. Each container sees
// its own figures, and a container nested in it (a cgroup below) its own.
type Views struct {
	host Host
	// cgroupOf finds a reader's cgroup; tests give their own.
	cgroupOf func(pid int) (*Cgroup, error)

	mu sync.Mutex
	// made are files made in the last cacheFor, by file and cgroup: a
	// tool that reads in a loop, or many processes of one container at
	// once, cost one making. Each file read costs tens of microseconds.
	made map[string]madeFile
	// now is the clock; tests give their own.
	now func() time.Time
}

// cacheFor is how long a made file is served again: well below the
// second that tools such as top sample at.
const cacheFor = 100 * time.Millisecond

type madeFile struct {
	b  []byte
	at time.Time
}

// NewViews makes the views of the host h, whose cgroup hierarchies are
// read now.
func NewViews(h Host) (*Views, error) {
	hs, err := ReadHierarchies()
	if err != nil {
		return nil, err
	}
	return &Views{host: h, cgroupOf: func(pid int) (*Cgroup, error) { return h.CgroupOf(pid, hs) }, made: map[string]madeFile{}}, nil
}

// viewFiles are the files of the views, in the order of their node IDs.
var viewFiles = []string{"cpuinfo", "meminfo", "online", "stat", "swaps"}

// File makes file name for the process pid, or gives it as made for its
// cgroup in the last cacheFor.
func (v *Views) File(pid int, name string) ([]byte, error) {
	cg, err := v.cgroupOf(pid)
	if err != nil {
		return nil, fmt.Errorf("cgroup of reader %d: %w", pid, err)
	}
	key := name + "\x00" + cg.Memory.dir
	if name != "meminfo" && name != "swaps" {
		key = name + "\x00" + cg.Cpuset.dir + "\x00" + cg.CPU.dir
	}
	now := time.Now()
	if v.now != nil {
		now = v.now()
	}
	v.mu.Lock()
	f, ok := v.made[key]
	v.mu.Unlock()
	if ok && now.Sub(f.at) < cacheFor {
		return f.b, nil
	}
	b, err := v.make(cg, name)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.made == nil {
		v.made = map[string]madeFile{}
	}
	if len(v.made) > 4096 {
		for k, f := range v.made {
			if now.Sub(f.at) >= cacheFor {
				delete(v.made, k)
			}
		}
	}
	v.made[key] = madeFile{b: b, at: now}
	return b, nil
}

func (v *Views) make(cg *Cgroup, name string) ([]byte, error) {
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

// Binds are the read-only bind mounts that show container id the views
// mounted at dir (its own directory there: its own inodes) over the
// kernel's files: those of /proc if the container mounts a proc at /proc,
// and of /sys if it mounts a sysfs at /sys. They go after the spec's own
// mounts.
func Binds(dir, id string, spec []specs.Mount) []specs.Mount {
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
			Destination: dst, Type: "bind", Source: filepath.Join(dir, id, f),
			Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"},
		})
	}
	return out
}
