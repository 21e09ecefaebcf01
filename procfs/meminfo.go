package procfs

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// memory is what a cgroup says of its memory, in bytes.
type memory struct {
	limit, usage           uint64
	limited                bool
	swapLimit, swapUsage   uint64
	swapLimited, swapKnown bool
	// From memory.stat, by the name /proc/meminfo gives the figure.
	stat map[string]uint64
}

// memStat maps the /proc/meminfo lines a cgroup knows to its memory.stat
// keys: v1's (hierarchical totals) and v2's.
var memStat = []struct{ meminfo, v1, v2 string }{
	{"Cached", "total_cache", "file"},
	{"Active(anon)", "total_active_anon", "active_anon"},
	{"Inactive(anon)", "total_inactive_anon", "inactive_anon"},
	{"Active(file)", "total_active_file", "active_file"},
	{"Inactive(file)", "total_inactive_file", "inactive_file"},
	{"Unevictable", "total_unevictable", "unevictable"},
	{"AnonPages", "total_rss", "anon"},
	{"Mapped", "total_mapped_file", "file_mapped"},
	{"Shmem", "total_shmem", "shmem"},
}

// readMemory reads the memory controller at c.
func readMemory(c controller) (memory, error) {
	var m memory
	var err error
	limitFile, usageFile := "memory.limit_in_bytes", "memory.usage_in_bytes"
	if c.v2 {
		limitFile, usageFile = "memory.max", "memory.current"
	}
	st, err := readStat(c.dir, "memory.stat")
	if err != nil {
		return m, err
	}
	// v1 gives the smallest limit on the path in memory.stat: one read
	// instead of one per cgroup above (each costs tens of microseconds).
	if v, ok := st["hierarchical_memory_limit"]; ok && !c.v2 {
		m.limit, m.limited = v, v < 1<<62
	} else if m.limit, m.limited, err = smallest(c, limitFile); err != nil {
		return m, err
	}
	if m.usage, _, err = readUint(c.dir, usageFile); err != nil {
		return m, err
	}
	m.stat = map[string]uint64{}
	for _, k := range memStat {
		key := k.v1
		if c.v2 {
			key = k.v2
		}
		m.stat[k.meminfo] = st[key]
	}
	if c.v2 {
		// Absent when the kernel does not account swap.
		if v, ok, err := smallest(c, "memory.swap.max"); err == nil {
			m.swapLimit, m.swapLimited = v, ok
			if u, _, err := readUint(c.dir, "memory.swap.current"); err == nil {
				m.swapUsage, m.swapKnown = u, true
			}
		}
		return m, nil
	}
	// v1 counts memory and swap together in memsw.
	memsw := func() (uint64, bool, error) { return smallest(c, "memory.memsw.limit_in_bytes") }
	if v, ok := st["hierarchical_memsw_limit"]; ok {
		memsw = func() (uint64, bool, error) { return v, v < 1<<62, nil }
	}
	if v, ok, err := memsw(); err == nil {
		if ok && m.limited && v >= m.limit {
			m.swapLimit, m.swapLimited = v-m.limit, true
		}
		if u, _, err := readUint(c.dir, "memory.memsw.usage_in_bytes"); err == nil {
			m.swapKnown = true
			if u > m.usage {
				m.swapUsage = u - m.usage
			}
		}
	}
	return m, nil
}

// Meminfo is /proc/meminfo as the container with cgroup cg sees it: the
// host's file with MemTotal the container's limit, and the figures the
// cgroup keeps (free, available, cache, active and inactive, swap) its
// own. With no memory limit it is the host's file.
func (h Host) Meminfo(cg *Cgroup) ([]byte, error) {
	host, err := os.ReadFile(h.proc("meminfo"))
	if err != nil {
		return nil, err
	}
	if cg.Memory.dir == "" {
		return host, nil
	}
	m, err := readMemory(cg.Memory)
	if err != nil {
		return nil, fmt.Errorf("memory of the container: %w", err)
	}
	return meminfo(host, m), nil
}

// limitedBelow reports whether m's limit binds below a host memory of
// total bytes: otherwise the container sees the host's files.
func (m memory) limitedBelow(total uint64) bool {
	return m.limited && m.limit < total
}

// swap returns the swap the container may use and uses, in bytes, and
// whether its cgroup knows: no more than the host has, whatever the limit.
func (m memory) swap(hostKB map[string]uint64) (total, used uint64, known bool) {
	if !m.swapKnown {
		return 0, 0, false
	}
	total = hostKB["SwapTotal"] * 1024
	if m.swapLimited {
		total = min(total, m.swapLimit)
	}
	return total, min(m.swapUsage, total), true
}

func meminfo(host []byte, m memory) []byte {
	hostKB := parseMeminfo(host)
	total := hostKB["MemTotal"] * 1024
	if !m.limitedBelow(total) {
		return host
	}
	total = m.limit
	usage := min(m.usage, total)
	free := total - usage
	avail := min(free+m.stat["Active(file)"]+m.stat["Inactive(file)"], total)
	set := map[string]uint64{
		"MemTotal":     total,
		"MemFree":      free,
		"MemAvailable": avail,
		"Buffers":      0,
		"SwapCached":   0,
		"Active":       m.stat["Active(anon)"] + m.stat["Active(file)"],
		"Inactive":     m.stat["Inactive(anon)"] + m.stat["Inactive(file)"],
	}
	for _, k := range memStat {
		set[k.meminfo] = m.stat[k.meminfo]
	}
	if swap, used, ok := m.swap(hostKB); ok {
		set["SwapTotal"] = swap
		set["SwapFree"] = swap - used
	}
	var out bytes.Buffer
	for _, line := range strings.SplitAfter(string(host), "\n") {
		key, _, ok := strings.Cut(line, ":")
		v, found := set[key]
		if !ok || !found || !strings.HasSuffix(strings.TrimSpace(line), " kB") {
			out.WriteString(line)
			continue
		}
		// The kernel's own layout: the key and colon in 16 columns, the
		// figure in 8.
		fmt.Fprintf(&out, "%-16s%8d kB\n", key+":", v/1024)
	}
	return out.Bytes()
}

// parseMeminfo returns the kB figures of a /proc/meminfo.
func parseMeminfo(b []byte) map[string]uint64 {
	out := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		key, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseUint(f[0], 10, 64); err == nil {
			out[key] = v
		}
	}
	return out
}

// swapsHeader is the first line of /proc/swaps.
const swapsHeader = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"

// Swaps is /proc/swaps as the container with cgroup cg sees it: one
// "none" area of the swap it may use, or none, when it has a memory limit;
// the host's file otherwise.
func (h Host) Swaps(cg *Cgroup) ([]byte, error) {
	host, err := os.ReadFile(h.proc("swaps"))
	if err != nil {
		return nil, err
	}
	if cg.Memory.dir == "" {
		return host, nil
	}
	mi, err := os.ReadFile(h.proc("meminfo"))
	if err != nil {
		return nil, err
	}
	m, err := readMemory(cg.Memory)
	if err != nil {
		return nil, fmt.Errorf("memory of the container: %w", err)
	}
	return swaps(host, parseMeminfo(mi), m), nil
}

func swaps(host []byte, hostKB map[string]uint64, m memory) []byte {
	total, used, known := m.swap(hostKB)
	if !m.limitedBelow(hostKB["MemTotal"]*1024) || !known {
		return host
	}
	out := swapsHeader
	if total > 0 {
		out += fmt.Sprintf("none\t\t\t\tvirtual\t\t%d\t\t%d\t\t0\n", total/1024, used/1024)
	}
	return []byte(out)
}
