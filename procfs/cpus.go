package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// CPUs returns the host CPUs the container with cgroup cg may use: its
// cpuset, cut to its CPU quota rounded up (1.5 CPUs are 2), the lowest
// numbered first. Containers see them renumbered from 0, as on a machine
// with that many CPUs.
func (h Host) CPUs(cg *Cgroup) ([]int, error) {
	var cpus []int
	if c := cg.Cpuset; c.dir != "" {
		name := "cpuset.effective_cpus"
		if c.v2 {
			name = "cpuset.cpus.effective"
		}
		b, err := os.ReadFile(filepath.Join(c.dir, name))
		if err != nil {
			return nil, err
		}
		if cpus, err = parseList(string(b)); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if len(cpus) == 0 {
		b, err := os.ReadFile(filepath.Join(h.sys(), "devices/system/cpu/online"))
		if err != nil {
			return nil, err
		}
		if cpus, err = parseList(string(b)); err != nil {
			return nil, fmt.Errorf("online CPUs: %w", err)
		}
	}
	n, err := quotaCPUs(cg.CPU)
	if err != nil {
		return nil, err
	}
	if n > 0 && n < len(cpus) {
		cpus = cpus[:n]
	}
	return cpus, nil
}

// sys is the host's /sys, beside Proc.
func (h Host) sys() string {
	if h.Proc == "" {
		return "/sys"
	}
	return filepath.Join(filepath.Dir(h.Proc), "sys")
}

// quotaCPUs returns how many CPUs the CPU quota of c, or of a cgroup
// above it, amounts to, rounded up; 0 if none has a quota.
func quotaCPUs(c controller) (int, error) {
	if c.dir == "" {
		return 0, nil
	}
	least := 0
	for i, d := range c.up() {
		n, err := quotaIn(d, c.v2)
		if err != nil {
			if i > 0 && errors.Is(err, os.ErrNotExist) {
				continue // a v2 root has no cpu.max
			}
			return 0, err
		}
		if n > 0 && (least == 0 || n < least) {
			least = n
		}
	}
	return least, nil
}

// quotaIn returns the CPUs the quota of cgroup directory d amounts to, or
// 0 if it sets none.
func quotaIn(d string, v2 bool) (int, error) {
	var quota, period uint64
	if v2 {
		b, err := os.ReadFile(filepath.Join(d, "cpu.max"))
		if err != nil {
			return 0, err
		}
		f := strings.Fields(string(b))
		if len(f) != 2 || f[0] == "max" {
			return 0, nil
		}
		if quota, err = strconv.ParseUint(f[0], 10, 64); err != nil {
			return 0, fmt.Errorf("cpu.max: %w", err)
		}
		if period, err = strconv.ParseUint(f[1], 10, 64); err != nil {
			return 0, fmt.Errorf("cpu.max: %w", err)
		}
	} else {
		var ok bool
		var err error
		if quota, ok, err = readUint(d, "cpu.cfs_quota_us"); err != nil || !ok {
			return 0, err
		}
		if period, _, err = readUint(d, "cpu.cfs_period_us"); err != nil {
			return 0, err
		}
	}
	if period == 0 {
		return 0, nil
	}
	return int((quota + period - 1) / period), nil
}

// parseList reads a kernel CPU list such as "0-3,8,10-11".
func parseList(s string) ([]int, error) {
	var out []int
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("bad CPU list %q", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("bad CPU list %q", s)
			}
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	sort.Ints(out)
	return out, nil
}

// Online is /sys/devices/system/cpu/online for a container of n CPUs.
func Online(n int) []byte {
	if n <= 1 {
		return []byte("0\n")
	}
	return []byte(fmt.Sprintf("0-%d\n", n-1))
}

// Cpuinfo is /proc/cpuinfo for a container that may use cpus: the host's
// entries of those CPUs only, numbered from 0.
func (h Host) Cpuinfo(cpus []int) ([]byte, error) {
	host, err := os.ReadFile(h.proc("cpuinfo"))
	if err != nil {
		return nil, err
	}
	return cpuinfo(host, cpus), nil
}

func cpuinfo(host []byte, cpus []int) []byte {
	index := indexOf(cpus)
	var out bytes.Buffer
	// One paragraph per CPU, each starting with its "processor" line;
	// anything before the first (some architectures) is kept.
	for _, para := range strings.SplitAfter(string(host), "\n\n") {
		first, rest, _ := strings.Cut(para, "\n")
		key, val, ok := strings.Cut(first, ":")
		if !ok || strings.TrimSpace(key) != "processor" {
			out.WriteString(para)
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(val))
		i, mine := index[n]
		if err != nil || !mine {
			continue
		}
		fmt.Fprintf(&out, "%s: %d\n%s", key, i, rest)
	}
	return out.Bytes()
}

// Stat is /proc/stat for a container that may use cpus: the per-CPU
// lines of those CPUs only, numbered from 0, and the "cpu" line their
// sum. The other lines are the host's.
func (h Host) Stat(cpus []int) ([]byte, error) {
	host, err := os.ReadFile(h.proc("stat"))
	if err != nil {
		return nil, err
	}
	return stat(host, cpus), nil
}

func stat(host []byte, cpus []int) []byte {
	index := indexOf(cpus)
	lines := strings.Split(string(host), "\n")
	var sum []uint64
	var perCPU []string
	total := -1
	var rest []string
	for _, line := range lines {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "cpu":
			total = len(rest)
			rest = append(rest, "")
		case len(f) > 0 && strings.HasPrefix(f[0], "cpu"):
			n, err := strconv.Atoi(f[0][3:])
			i, mine := index[n]
			if err != nil || !mine {
				continue
			}
			if sum == nil {
				sum = make([]uint64, len(f)-1)
			}
			for j, v := range f[1:] {
				if j < len(sum) {
					x, _ := strconv.ParseUint(v, 10, 64)
					sum[j] += x
				}
			}
			perCPU = append(perCPU, fmt.Sprintf("cpu%d %s", i, strings.Join(f[1:], " ")))
		default:
			rest = append(rest, line)
		}
	}
	var out []string
	for i, line := range rest {
		if i == total {
			fields := make([]string, len(sum))
			for j, v := range sum {
				fields[j] = strconv.FormatUint(v, 10)
			}
			// The kernel puts two spaces after the total's "cpu".
			out = append(out, "cpu  "+strings.Join(fields, " "))
			out = append(out, perCPU...)
			continue
		}
		out = append(out, line)
	}
	return []byte(strings.Join(out, "\n"))
}

// indexOf numbers cpus from 0, by host CPU.
func indexOf(cpus []int) map[int]int {
	index := make(map[int]int, len(cpus))
	for i, c := range cpus {
		index[c] = i
	}
	return index
}
