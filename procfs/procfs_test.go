package procfs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const hostMeminfo = `MemTotal:       24683620 kB
MemFree:        23836468 kB
MemAvailable:   24338036 kB
Buffers:            3440 kB
Cached:           671284 kB
SwapCached:            0 kB
Active:           517504 kB
Inactive:         151940 kB
Active(anon):       1588 kB
Inactive(anon):     2112 kB
Active(file):     515916 kB
Inactive(file):   149828 kB
Unevictable:       10200 kB
SwapTotal:      %8d kB
SwapFree:       %8d kB
AnonPages:          4932 kB
Mapped:            10480 kB
Shmem:              8968 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
`

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const mib = 1 << 20

func TestMeminfo(t *testing.T) {
	stat := func(v2 bool) string {
		// cache 40 MiB (active 30, inactive 10), anon 60 MiB, shmem 1 MiB
		names := []string{"total_cache", "total_rss", "total_shmem", "total_active_anon", "total_inactive_anon", "total_active_file", "total_inactive_file", "total_mapped_file", "total_unevictable"}
		if v2 {
			names = []string{"file", "anon", "shmem", "active_anon", "inactive_anon", "active_file", "inactive_file", "file_mapped", "unevictable"}
		}
		vals := []int{40 * mib, 60 * mib, 1 * mib, 50 * mib, 10 * mib, 30 * mib, 10 * mib, 5 * mib, 0}
		var b strings.Builder
		for i, n := range names {
			fmt.Fprintf(&b, "%s %d\n", n, vals[i])
		}
		return b.String()
	}
	for _, tc := range []struct {
		name     string
		v2       bool
		files    map[string]string
		hostSwap uint64 // kB
		same     bool   // the host's file comes back
		swap     uint64 // expected SwapTotal, kB
		swapUsed uint64 // kB
	}{
		{name: "v1 256m with 512m memory+swap", files: map[string]string{
			"memory.limit_in_bytes": "268435456", "memory.usage_in_bytes": "104857600",
			"memory.memsw.limit_in_bytes": "536870912", "memory.memsw.usage_in_bytes": "115343360",
		}, hostSwap: 1 << 20, swap: 256 * 1024, swapUsed: 10 * 1024},
		{name: "v1 256m, no swap on the host", files: map[string]string{
			"memory.limit_in_bytes": "268435456", "memory.usage_in_bytes": "104857600",
			"memory.memsw.limit_in_bytes": "536870912", "memory.memsw.usage_in_bytes": "104857600",
		}, hostSwap: 0, swap: 0},
		{name: "v1 no limit", files: map[string]string{
			"memory.limit_in_bytes": "9223372036854771712", "memory.usage_in_bytes": "104857600",
		}, hostSwap: 0, same: true},
		{name: "v1 limit above the host's memory", files: map[string]string{
			"memory.limit_in_bytes": "1099511627776", "memory.usage_in_bytes": "104857600",
		}, hostSwap: 0, same: true},
		{name: "v2 256m with 256m swap", v2: true, files: map[string]string{
			"memory.max": "268435456", "memory.current": "104857600",
			"memory.swap.max": "268435456", "memory.swap.current": "10485760",
		}, hostSwap: 1 << 20, swap: 256 * 1024, swapUsed: 10 * 1024},
		{name: "v2 no limit", v2: true, files: map[string]string{
			"memory.max": "max", "memory.current": "104857600",
		}, hostSwap: 0, same: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			h := Host{Proc: filepath.Join(root, "proc")}
			host := fmt.Sprintf(hostMeminfo, tc.hostSwap, tc.hostSwap)
			hostSwaps := swapsHeader
			if tc.hostSwap > 0 {
				hostSwaps += fmt.Sprintf("/swapfile\t\t\t\tfile\t\t%d\t\t0\t\t-2\n", tc.hostSwap)
			}
			writeFiles(t, h.Proc, map[string]string{"meminfo": host, "swaps": hostSwaps})
			cgdir := filepath.Join(root, "cg")
			tc.files["memory.stat"] = stat(tc.v2)
			writeFiles(t, cgdir, tc.files)

			cg := &Cgroup{Memory: controller{dir: cgdir, v2: tc.v2}}
			got, err := h.Meminfo(cg)
			if err != nil {
				t.Fatal(err)
			}
			sw, err := h.Swaps(cg)
			if err != nil {
				t.Fatal(err)
			}
			if tc.same {
				if string(got) != host || string(sw) != hostSwaps {
					t.Fatalf("want the host's files, got\n%s\n%s", got, sw)
				}
				return
			}
			// /proc/swaps: one area of the swap the container may use.
			swapLines := strings.Split(strings.TrimSuffix(string(sw), "\n"), "\n")
			if swapLines[0]+"\n" != swapsHeader {
				t.Errorf("swaps header %q", swapLines[0])
			}
			if tc.swap == 0 && len(swapLines) != 1 {
				t.Errorf("swaps with no swap: %q", sw)
			}
			if tc.swap > 0 {
				if f := strings.Fields(swapLines[len(swapLines)-1]); len(swapLines) != 2 || len(f) != 5 ||
					f[2] != fmt.Sprint(tc.swap) || f[3] != fmt.Sprint(tc.swapUsed) {
					t.Errorf("swaps %q, want an area of %d kB with %d used", sw, tc.swap, tc.swapUsed)
				}
			}
			kb := parseMeminfo(got)
			want := map[string]uint64{
				"MemTotal": 256 * 1024, "MemFree": (256 - 100) * 1024,
				"MemAvailable": (256 - 100 + 40) * 1024, "Cached": 40 * 1024,
				"Buffers": 0, "AnonPages": 60 * 1024, "Shmem": 1024,
				"Active": 80 * 1024, "Inactive": 20 * 1024,
				"Active(file)": 30 * 1024, "Mapped": 5 * 1024,
				"SwapTotal": tc.swap, "SwapFree": tc.swap - tc.swapUsed,
				// Not the cgroup's: the host's, unchanged.
				"Hugepagesize": 2048,
			}
			for k, v := range want {
				if kb[k] != v {
					t.Errorf("%s: %d kB, want %d kB", k, kb[k], v)
				}
			}
			// Every line keeps the kernel's layout, in the host's order.
			gl, hl := strings.Split(string(got), "\n"), strings.Split(host, "\n")
			if len(gl) != len(hl) {
				t.Fatalf("%d lines, the host's file has %d", len(gl), len(hl))
			}
			for i := range gl {
				gk, _, _ := strings.Cut(gl[i], ":")
				hk, _, _ := strings.Cut(hl[i], ":")
				if gk != hk || strings.HasSuffix(hl[i], " kB") && len(gl[i]) != len(hl[i]) {
					t.Errorf("line %d: %q, the host's is %q", i, gl[i], hl[i])
				}
			}
		})
	}
}

func TestCPUs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cpuset map[string]string // nil: no cpuset controller
		cpu    map[string]string
		v2     bool
		want   []int
	}{
		{"v1 cpuset 0-3, 1.5 CPUs of quota", map[string]string{"cpuset.effective_cpus": "0-3\n"},
			map[string]string{"cpu.cfs_quota_us": "150000", "cpu.cfs_period_us": "100000"}, false, []int{0, 1}},
		{"v1 cpuset 1,3, no quota", map[string]string{"cpuset.effective_cpus": "1,3\n"},
			map[string]string{"cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000"}, false, []int{1, 3}},
		{"v2 cpuset 2-5, half a CPU", map[string]string{"cpuset.cpus.effective": "2-5\n"},
			map[string]string{"cpu.max": "50000 100000\n"}, true, []int{2}},
		{"v2 no cpuset, no quota: the online CPUs", nil,
			map[string]string{"cpu.max": "max 100000\n"}, true, []int{0, 1, 2}},
		{"quota above the cpuset", map[string]string{"cpuset.effective_cpus": "0\n"},
			map[string]string{"cpu.cfs_quota_us": "400000", "cpu.cfs_period_us": "100000"}, false, []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			h := Host{Proc: filepath.Join(root, "proc")}
			writeFiles(t, filepath.Join(root, "sys/devices/system/cpu"), map[string]string{"online": "0-2\n"})
			var cg Cgroup
			if tc.cpuset != nil {
				cg.Cpuset = controller{dir: filepath.Join(root, "cpuset"), v2: tc.v2}
				writeFiles(t, cg.Cpuset.dir, tc.cpuset)
			}
			cg.CPU = controller{dir: filepath.Join(root, "cpu"), v2: tc.v2}
			writeFiles(t, cg.CPU.dir, tc.cpu)
			got, err := h.CPUs(&cg)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("CPUs %v, want %v", got, tc.want)
			}
			online := strings.TrimSpace(string(Online(len(got))))
			if l, err := parseList(online); err != nil || len(l) != len(got) || l[0] != 0 {
				t.Fatalf("online %q for %v", online, got)
			}
		})
	}
}

// The running kernel's cpuinfo and stat, cut to its last CPU: one entry,
// numbered 0, that is otherwise the host's.
func TestCpuinfoAndStat(t *testing.T) {
	var h Host
	online, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		t.Skip(err)
	}
	all, err := parseList(string(online))
	if err != nil {
		t.Fatal(err)
	}
	last := all[len(all)-1]
	info, err := os.ReadFile(h.proc("cpuinfo"))
	if err != nil {
		t.Fatal(err)
	}
	got := string(cpuinfo(info, []int{last}))
	n := 0
	for _, l := range strings.Split(got, "\n") {
		if strings.HasPrefix(l, "processor") {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d processor entries:\n%s", n, got)
	}
	var hostEntry string
	for _, para := range strings.SplitAfter(string(info), "\n\n") {
		first, rest, _ := strings.Cut(para, "\n")
		if _, v, _ := strings.Cut(first, ":"); strings.HasPrefix(first, "processor") && strings.TrimSpace(v) == strconv.Itoa(last) {
			hostEntry = rest
		}
	}
	first, rest, _ := strings.Cut(got, "\n")
	if _, v, _ := strings.Cut(first, ":"); strings.TrimSpace(v) != "0" || rest != hostEntry {
		t.Fatalf("entry %q, want processor 0 with the host's lines of CPU %d", got, last)
	}

	st, err := os.ReadFile(h.proc("stat"))
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Split(string(stat(st, []int{last})), "\n")
	var hostLine []string
	for _, l := range strings.Split(string(st), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "cpu"+strconv.Itoa(last) {
			hostLine = f[1:]
		}
	}
	var cpuLines []string
	for _, l := range out {
		if strings.HasPrefix(l, "cpu") {
			cpuLines = append(cpuLines, l)
		}
	}
	if len(cpuLines) != 2 || !strings.HasPrefix(cpuLines[0], "cpu  ") || !strings.HasPrefix(cpuLines[1], "cpu0 ") {
		t.Fatalf("cpu lines %q", cpuLines)
	}
	for _, l := range cpuLines {
		if f := strings.Fields(l)[1:]; strings.Join(f, " ") != strings.Join(hostLine, " ") {
			t.Errorf("%q: want the host's figures of CPU %d, %v", l, last, hostLine)
		}
	}
	if len(out) != len(strings.Split(string(st), "\n"))-(len(all)-1) {
		t.Errorf("%d lines: only the other CPUs' lines should go", len(out))
	}
}

// memCgroup makes a memory cgroup with a 256 MiB limit below this
// process's, with an "inner" cgroup below it that sets no limit of its
// own, and removes both when the test ends (after its processes).
func memCgroup(t *testing.T) (limited, inner string, hs *Hierarchies) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	hs, err := ReadHierarchies()
	if err != nil {
		t.Fatal(err)
	}
	var h Host
	self, err := h.CgroupOf(os.Getpid(), hs)
	if err != nil {
		t.Fatal(err)
	}
	if self.Memory.dir == "" {
		t.Skip("no memory controller")
	}
	limited = filepath.Join(self.Memory.dir, "moat-procfs-test-"+strconv.Itoa(os.Getpid()))
	inner = filepath.Join(limited, "inner")
	limitFile := "memory.limit_in_bytes"
	if self.Memory.v2 {
		limitFile = "memory.max"
	}
	if err := os.Mkdir(limited, 0o755); err != nil {
		t.Skipf("cannot make a cgroup here: %v", err)
	}
	t.Cleanup(func() {
		for _, d := range []string{inner, limited} {
			if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
				t.Errorf("remove the test cgroup: %v", err)
			}
		}
	})
	if self.Memory.v2 {
		_ = os.WriteFile(filepath.Join(limited, "cgroup.subtree_control"), []byte("+memory"), 0)
	}
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(limited, limitFile), []byte("268435456"), 0); err != nil {
		t.Fatal(err)
	}
	return limited, inner, hs
}

// startIn starts cmd and moves it into cgroup dir; the test kills it in
// the end.
func startIn(t *testing.T, cmd *exec.Cmd, dir string) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
}

// A process moved into a memory cgroup below one with a limit: its cgroup
// is found from the kernel's own files, and the limit above it is its
// MemTotal.
func TestCgroupOf(t *testing.T) {
	_, inner, hs := memCgroup(t)
	cmd := exec.Command("sleep", "600")
	startIn(t, cmd, inner)
	var h Host
	cg, err := h.CgroupOf(cmd.Process.Pid, hs)
	if err != nil {
		t.Fatal(err)
	}
	if cg.Memory.dir != inner {
		t.Fatalf("memory cgroup %q, want %q", cg.Memory.dir, inner)
	}
	mi, err := h.Meminfo(cg)
	if err != nil {
		t.Fatal(err)
	}
	if got := parseMeminfo(mi)["MemTotal"]; got != 256*1024 {
		t.Fatalf("MemTotal %d kB, want %d", got, 256*1024)
	}
}

// A hybrid host: memory on its v1 hierarchy, cpu on v2 (enabled there),
// cpuset on neither; and a cgroup namespace's root on v1.
func TestParseCgroup(t *testing.T) {
	hs := &Hierarchies{
		v1: map[string]hierarchy{"memory": {mountpoint: "/sys/fs/cgroup/memory", root: "/docker"}},
		v2: &hierarchy{mountpoint: "/sys/fs/cgroup/unified", root: "/", controllers: map[string]bool{"cpu": true}},
	}
	cg, err := hs.parse(strings.NewReader("4:memory:/docker/c1\n0::/docker/c1\n3:cpuset:/docker/c1\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Cgroup{
		Memory: controller{dir: "/sys/fs/cgroup/memory/c1", root: "/sys/fs/cgroup/memory"},
		CPU:    controller{dir: "/sys/fs/cgroup/unified/docker/c1", root: "/sys/fs/cgroup/unified", v2: true},
	}
	if *cg != want {
		t.Fatalf("got %+v, want %+v", *cg, want)
	}
	if _, err := hs.parse(strings.NewReader("3:cpuset:/c\n")); err == nil {
		t.Fatal("a process with neither memory nor cpu controller found")
	}
}
