// Package procfs owns what a container sees in the /proc and /sys files
// moat serves it: the host's file with the figures its cgroup sets (memory
// limit and usage, the CPUs it may use) put in, in the kernel's formats.
// It reads cgroup v1 and v2 controllers alike, and a hybrid host's mix.
package procfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// controller is where one cgroup controller of a process lives.
type controller struct {
	dir  string // the process's cgroup directory of the controller
	root string // the hierarchy's mount point: dir or above it
	v2   bool
}

// up lists c's directory and those above it, up to the hierarchy's root:
// a limit set on any of them binds the process.
func (c controller) up() []string {
	var dirs []string
	for d := c.dir; ; d = filepath.Dir(d) {
		dirs = append(dirs, d)
		if c.root == "" || d == c.root || !strings.HasPrefix(d, c.root+"/") {
			return dirs
		}
	}
}

// Cgroup is where a process's memory and CPU controllers live.
type Cgroup struct {
	Memory, CPU, Cpuset controller
}

// Host is where the host's files are read from: its zero value reads the
// running kernel's; tests point it elsewhere.
type Host struct {
	// Proc is the host's /proc ("" is /proc).
	Proc string
}

func (h Host) proc(name ...string) string {
	p := h.Proc
	if p == "" {
		p = "/proc"
	}
	return filepath.Join(append([]string{p}, name...)...)
}

// hierarchy is one mounted cgroup hierarchy.
type hierarchy struct {
	mountpoint, root string // root: the cgroup mounted (a cgroup namespace's)
	controllers      map[string]bool
}

// Hierarchies are the cgroup hierarchies mounted in the reader's mount
// namespace (the helper's: the host's), read once: finding a process's
// cgroup then reads only its /proc/<pid>/cgroup.
type Hierarchies struct {
	v1 map[string]hierarchy // by controller
	v2 *hierarchy           // with the controllers enabled at its root
}

// ReadHierarchies reads the cgroup mounts of this process's mount
// namespace, and which controllers the v2 hierarchy has.
func ReadHierarchies() (*Hierarchies, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, fmt.Errorf("cgroup mounts: %w", err)
	}
	hs := &Hierarchies{v1: map[string]hierarchy{}}
	for _, m := range mounts {
		h := hierarchy{mountpoint: m.Mountpoint, root: m.Root, controllers: map[string]bool{}}
		if m.FSType == "cgroup" {
			for _, o := range strings.Split(m.VFSOptions, ",") {
				h.controllers[o] = true
				if _, seen := hs.v1[o]; !seen {
					hs.v1[o] = h
				}
			}
			continue
		}
		// On a hybrid host most controllers are on v1: the v2 root's
		// cgroup.controllers names those that are not.
		ctls, err := os.ReadFile(filepath.Join(m.Mountpoint, "cgroup.controllers"))
		if err != nil || hs.v2 != nil {
			continue
		}
		for _, c := range strings.Fields(string(ctls)) {
			h.controllers[c] = true
		}
		hs.v2 = &h
	}
	return hs, nil
}

// CgroupOf finds the cgroup directories of process pid, from its
// /proc/<pid>/cgroup, on the hierarchies hs.
func (h Host) CgroupOf(pid int, hs *Hierarchies) (*Cgroup, error) {
	f, err := os.Open(h.proc(strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return hs.parse(f)
}

func (hs *Hierarchies) parse(f io.Reader) (*Cgroup, error) {
	// v1 hierarchies by controller, the v2 one by "".
	paths := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			paths[c] = parts[2]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	cg := Cgroup{Memory: hs.locate("memory", paths), CPU: hs.locate("cpu", paths), Cpuset: hs.locate("cpuset", paths)}
	if cg.Memory.dir == "" && cg.CPU.dir == "" {
		return nil, errors.New("no memory or cpu controller found for the process")
	}
	return &cg, nil
}

// locate finds controller name: on its v1 hierarchy if it has one, else
// on the v2 hierarchy if that has it enabled.
func (hs *Hierarchies) locate(name string, paths map[string]string) controller {
	if p, ok := paths[name]; ok {
		if h, ok := hs.v1[name]; ok {
			return controller{dir: h.within(p), root: h.mountpoint}
		}
	}
	if p, ok := paths[""]; ok && hs.v2 != nil && hs.v2.controllers[name] {
		return controller{dir: hs.v2.within(p), root: hs.v2.mountpoint, v2: true}
	}
	return controller{}
}

// within is the directory of cgroup path p on h, whose root may be a
// cgroup below the hierarchy's root (a cgroup namespace).
func (h hierarchy) within(p string) string {
	rel := p
	if h.root != "/" {
		rel = strings.TrimPrefix(p, h.root)
	}
	return filepath.Join(h.mountpoint, rel)
}

// readUint reads a file holding one number; "max" (v2) and v1's huge
// "unlimited" values come back as ok == false.
func readUint(dir, name string) (v uint64, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0, false, err
	}
	s := string(bytes.TrimSpace(b))
	if s == "max" {
		return 0, false, nil
	}
	v, err = strconv.ParseUint(s, 10, 64)
	if err != nil {
		if n, ierr := strconv.ParseInt(s, 10, 64); ierr == nil && n < 0 {
			return 0, false, nil // v1's -1: no limit
		}
		return 0, false, fmt.Errorf("%s: %w", name, err)
	}
	// v1 says "no limit" with the largest page-aligned value.
	if v >= 1<<62 {
		return 0, false, nil
	}
	return v, true, nil
}

// smallest reads the limit in file name of c's directory and of those
// above it, and returns the smallest set; ok is false if none is.
func smallest(c controller, name string) (v uint64, ok bool, err error) {
	for i, d := range c.up() {
		lim, set, err := readUint(d, name)
		if err != nil {
			if i > 0 && errors.Is(err, os.ErrNotExist) {
				continue // a v2 root has no limit files
			}
			return 0, false, err
		}
		if set && (!ok || lim < v) {
			v, ok = lim, true
		}
	}
	return v, ok, nil
}

// readStat reads a flat "key value" file such as memory.stat.
func readStat(dir, name string) (map[string]uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
			out[f[0]] = v
		}
	}
	return out, nil
}
