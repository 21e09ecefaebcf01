package procfs

import (
	"fmt"
	"sort"
	"sync"
	"syscall"
)

// Views are the containers whose files one FUSE filesystem serves, each
// in a directory named by its ID: <mount>/<id>/meminfo, cpuinfo, stat,
// swaps and online (for /sys/devices/system/cpu/online). A file's content
// is made when it is opened, from the container's cgroup at that moment.
type Views struct {
	host    Host
	mu      sync.Mutex
	cgroups map[string]*Cgroup
}

// NewViews serves no container yet; h is where the host's files are read.
func NewViews(h Host) *Views {
	return &Views{host: h, cgroups: map[string]*Cgroup{}}
}

// Add serves container id, whose resources are cg's.
func (v *Views) Add(id string, cg *Cgroup) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.cgroups[id] = cg
}

// Remove stops serving container id: its directory is gone.
func (v *Views) Remove(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.cgroups, id)
}

func (v *Views) cgroup(id string) *Cgroup {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.cgroups[id]
}

func (v *Views) ids() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]string, 0, len(v.cgroups))
	for id := range v.cgroups {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// viewFiles are the files of a container's directory.
var viewFiles = []string{"cpuinfo", "meminfo", "online", "stat", "swaps"}

// File makes file name of container id.
func (v *Views) File(id, name string) ([]byte, error) {
	cg := v.cgroup(id)
	if cg == nil {
		return nil, fmt.Errorf("container %s: %w", id, syscall.ENOENT)
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
