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
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// fakeHost writes a host's files and a container's cgroup under root: a
// 256 MiB limit, CPU 1 of two.
func fakeHost(t *testing.T, root string) (Host, *Cgroup) {
	t.Helper()
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
	return h, cg
}

// mountViews mounts v on a new directory under root and serves it; the
// test unmounts it in the end, and the serving stops.
func mountViews(t *testing.T, v *Views, root string) (string, *Session, chan error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip(err)
	}
	mnt := filepath.Join(root, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := v.Mount(mnt)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		if m, _ := mountinfo.Mounted(mnt); m {
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
		s.Device().Close()
	})
	return mnt, s, served
}

// The views mounted over FUSE on the running kernel: a container's files
// read what the generators make of its cgroup; an unknown or removed
// container has no directory; nothing stays mounted after unmount.
func TestViewsMount(t *testing.T) {
	root := t.TempDir()
	h, cg := fakeHost(t, root)
	v := NewViews(h)
	v.Add("c1", cg)
	mnt, _, served := mountViews(t, v, root)

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

	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if m, err := mountinfo.Mounted(mnt); err != nil || m {
		t.Fatalf("still mounted after unmount (%v)", err)
	}
}

// A session that dies with a request read and not answered: a new one on
// the same /dev/fuse connection has the kernel send it again and answers
// it, so the reader never sees an error, and the files read as before.
func TestViewsResume(t *testing.T) {
	root := t.TempDir()
	h, cg := fakeHost(t, root)
	v := NewViews(h)
	v.Add("c1", cg)
	mnt, first, served := mountViews(t, v, root)
	file := filepath.Join(mnt, "c1", "meminfo")
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}

	// The read's release comes after it, on its own: it must be answered
	// before the stop, or the stop drops it instead of the next read's.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		first.mu.Lock()
		open := len(first.handles)
		first.mu.Unlock()
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first read's file was never released")
		}
	}
	first.Stop()
	// The next request is read and dropped: this open waits for an answer.
	read := make(chan error, 1)
	var got []byte
	go func() {
		var err error
		got, err = os.ReadFile(file)
		read <- err
	}()
	if err := <-served; err != nil {
		t.Fatalf("first session: %v", err)
	}
	t.Logf("left unanswered: request %d", first.dropped)
	if first.dropped != opOpen && first.dropped != opLookup {
		t.Fatalf("the first session dropped request %d, not the read's open or lookup", first.dropped)
	}
	select {
	case err := <-read:
		t.Fatalf("the read ended with no session to answer it: %v", err)
	case <-time.After(200 * time.Millisecond):
	}

	dev, err := dupFile(first.Device())
	if err != nil {
		t.Fatal(err)
	}
	second, err := v.Resume(dev)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = second.Serve() }()
	select {
	case err := <-read:
		if err != nil {
			t.Fatalf("read through the new session: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the pending read was never answered")
	}
	if string(got) != string(want) {
		t.Fatalf("read %q, want %q", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "c1", "online")); err != nil || string(b) != "0\n" {
		t.Fatalf("online: %q, %v", b, err)
	}
}

func dupFile(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}
