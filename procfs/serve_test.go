package procfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/sys/mountinfo"
)

// The views mounted over FUSE on the running kernel: a container's files
// read what the generators make of its cgroup; an unknown or removed
// container has no directory; nothing stays mounted after unmount.
func TestViewsMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip(err)
	}
	root := t.TempDir()
	h := Host{Proc: filepath.Join(root, "proc")}
	writeFiles(t, h.Proc, map[string]string{
		"meminfo": fmt.Sprintf(hostMeminfo, 0, 0),
		"swaps":   swapsHeader,
		"stat":    "cpu  4 0 4 40 0 0 0 0 0 0\ncpu0 1 0 1 10 0 0 0 0 0 0\ncpu1 3 0 3 30 0 0 0 0 0 0\nctxt 5\n",
		"cpuinfo": "processor\t: 0\nmodel name\t: a\n\nprocessor\t: 1\nmodel name\t: b\n\n",
	})
	writeFiles(t, filepath.Join(root, "sys/devices/system/cpu"), map[string]string{"online": "0-1\n"})
	cg := &Cgroup{
		Memory: controller{dir: filepath.Join(root, "memory")},
		Cpuset: controller{dir: filepath.Join(root, "cpuset")},
		CPU:    controller{dir: filepath.Join(root, "cpu")},
	}
	writeFiles(t, cg.Memory.dir, map[string]string{
		"memory.limit_in_bytes": "268435456", "memory.usage_in_bytes": "104857600", "memory.stat": "total_cache 0\n",
	})
	writeFiles(t, cg.Cpuset.dir, map[string]string{"cpuset.effective_cpus": "1\n"})
	writeFiles(t, cg.CPU.dir, map[string]string{"cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000"})

	v := NewViews(h)
	v.Add("c1", cg)
	mnt := filepath.Join(root, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := v.Mount(mnt)
	if err != nil {
		t.Fatal(err)
	}
	unmounted := false
	t.Cleanup(func() {
		if !unmounted {
			_ = srv.Unmount()
		}
	})

	for _, name := range viewFiles {
		want, err := v.File("c1", name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(mnt, "c1", name))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s: read %q, made %q", name, got, want)
		}
	}
	// The container's own CPU, as CPU 0; its memory limit.
	if b, _ := os.ReadFile(filepath.Join(mnt, "c1", "cpuinfo")); string(b) != "processor\t: 0\nmodel name\t: b\n\n" {
		t.Errorf("cpuinfo %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(mnt, "c1", "meminfo")); parseMeminfo(b)["MemTotal"] != 256*1024 {
		t.Errorf("meminfo %q", b)
	}
	ents, err := os.ReadDir(filepath.Join(mnt, "c1"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if strings.Join(names, " ") != strings.Join(viewFiles, " ") {
		t.Errorf("directory lists %v", names)
	}
	if err := os.WriteFile(filepath.Join(mnt, "c1", "meminfo"), []byte("x"), 0); err == nil {
		t.Error("a view file took a write")
	}
	if _, err := os.ReadFile(filepath.Join(mnt, "c2", "meminfo")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("unknown container: %v, want ENOENT", err)
	}
	v.Remove("c1")
	if _, err := os.Open(filepath.Join(mnt, "c1", "meminfo")); err == nil {
		// The kernel may still know the entry for its timeout; the open
		// itself is refused by the server.
		t.Error("a removed container's file opened")
	}

	if err := srv.Unmount(); err != nil {
		t.Fatal(err)
	}
	unmounted = true
	if m, err := mountinfo.Mounted(mnt); err != nil || m {
		t.Fatalf("still mounted after unmount (%v)", err)
	}
}
