//go:build integration

package test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moatrt/moat/helper"
)

// meminfoKB reads one figure of a /proc/meminfo text.
func meminfoKB(text, key string) int {
	for _, l := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == key {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return -1
}

// cgroupFile reads file of the memory cgroup of docker container n's init,
// from the host.
func cgroupFile(t *testing.T, n, file string) string {
	t.Helper()
	pid := strings.TrimSpace(mustDocker(t, "inspect", "-f", "{{.State.Pid}}", n))
	b, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) == 3 && (parts[1] == "memory" || parts[1] == "" && !strings.Contains(string(b), ":memory:")) {
			dir := filepath.Join("/sys/fs/cgroup/memory", parts[2])
			if parts[1] == "" {
				dir = filepath.Join("/sys/fs/cgroup", parts[2])
			}
			v, err := os.ReadFile(filepath.Join(dir, file))
			if err != nil {
				t.Fatal(err)
			}
			return strings.TrimSpace(string(v))
		}
	}
	t.Fatalf("no memory cgroup for %s", n)
	return ""
}

// With the views enabled in moat's config, a container sees the limits
// of its own cgroup in /proc/meminfo, cpuinfo, stat, swaps and
// /sys/devices/system/cpu/online, cannot unmount them, and a proc it
// mounts itself shows them too; one with no limits sees the host's
// figures; a kill of the helper leaves them served.
func TestViews(t *testing.T) {
	rt, _ := configuredRuntime(t, "[views]\nenabled = true\n")
	limited := name(t)
	mustDocker(t, "run", "-d", "--runtime", rt, "--name", limited, "--cap-add", "SYS_ADMIN",
		"--memory", "256m", "--memory-swap", "512m", "--cpus", "1.5", "--cpuset-cpus", "0", image, "sleep", "600")
	free := name(t)
	mustDocker(t, "run", "-d", "--runtime", rt, "--name", free, image, "sleep", "600")

	limit, err := strconv.Atoi(cgroupFile(t, limited, "memory.limit_in_bytes"))
	if err != nil {
		t.Fatal(err)
	}
	hostInfo, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		mi := mustDocker(t, "exec", limited, "cat", "/proc/meminfo")
		if got := meminfoKB(mi, "MemTotal"); got != limit/1024 {
			t.Errorf("%s: MemTotal %d kB, the cgroup's limit is %d kB", when, got, limit/1024)
		}
		if free, total := meminfoKB(mi, "MemFree"), meminfoKB(mi, "MemTotal"); free < 0 || free > total {
			t.Errorf("%s: MemFree %d kB of %d", when, free, total)
		}
		// --cpuset-cpus 0 and a quota of 1.5: one CPU.
		cpus := mustDocker(t, "exec", limited, "sh", "-c",
			"cat /sys/devices/system/cpu/online; grep -c ^processor /proc/cpuinfo; grep -c '^cpu[0-9]' /proc/stat")
		if cpus != "0\n1\n1" {
			t.Errorf("%s: online, cpuinfo and stat CPUs %q, want 0, 1, 1", when, cpus)
		}
		// No more swap than the host has (none here, maybe).
		swaps := mustDocker(t, "exec", limited, "cat", "/proc/swaps")
		wantLines := 1
		if meminfoKB(string(hostInfo), "SwapTotal") > 0 {
			wantLines = 2
		}
		if n := len(strings.Split(swaps, "\n")); n != wantLines || !strings.HasPrefix(swaps, "Filename") {
			t.Errorf("%s: /proc/swaps %q", when, swaps)
		}
	}
	check("started")

	if got, want := meminfoKB(mustDocker(t, "exec", free, "cat", "/proc/meminfo"), "MemTotal"), meminfoKB(string(hostInfo), "MemTotal"); got != want {
		t.Errorf("no limit: MemTotal %d kB, the host's is %d kB", got, want)
	}

	out := mustDocker(t, "exec", limited, "sh", "-c", vetScript([][2]string{
		{"umount_view", "umount /proc/meminfo"},
	}))
	if got := statuses(out); got["umount_view"] == "0" {
		t.Errorf("the container unmounted its view of /proc/meminfo: %q", out)
	}
	newProc := mustDocker(t, "exec", limited, "sh", "-c", "mkdir -p /root/p && mount -t proc proc /root/p && grep MemTotal /root/p/meminfo")
	if got := meminfoKB(newProc, "MemTotal"); got != limit/1024 {
		t.Errorf("a proc the container mounts shows %q, want its view's MemTotal, %d kB", newProc, limit/1024)
	}

	// A container removed while it holds the views open leaves the helper
	// no goroutine or file more than before it came.
	st, err := helper.GetStatus()
	if err != nil {
		t.Fatal(err)
	}
	holder := name(t)
	mustDocker(t, "run", "-d", "--runtime", rt, "--name", holder, "--memory", "128m", image,
		"sh", "-c", "exec 3</proc/meminfo 4</proc/stat; cat /proc/cpuinfo >/dev/null; sleep 600")
	mustDocker(t, "exec", holder, "cat", "/proc/meminfo")
	mustDocker(t, "rm", "-f", holder)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		now, err := helper.GetStatus()
		if err != nil {
			t.Fatal(err)
		}
		if now.Goroutines <= st.Goroutines && now.FDs <= st.FDs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a container holding the views went: %d goroutines and %d fds, %d and %d before it came",
				now.Goroutines, now.FDs, st.Goroutines, st.FDs)
		}
	}

	if st.Views != helper.ViewsDir {
		t.Fatalf("helper status says views at %q", st.Views)
	}
	kill9(t, st.Pid)
	deadline := time.Now().Add(30 * time.Second)
	for {
		now, err := helper.GetStatus()
		if err == nil && now.Pid != st.Pid && now.Views != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no helper serves the views again 30s after the kill: %v %v", now, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	check("after kill -9 of the helper")
}
