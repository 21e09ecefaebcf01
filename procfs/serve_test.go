package procfs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
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

// mountViews mounts v on a new directory under root and serves it. stop
// unmounts it and returns what serving returned; the test calls it in the
// end if it did not.
func mountViews(t *testing.T, v *Views, root string) (mnt string, s *Session, done <-chan struct{}, stop func() error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip(err)
	}
	mnt = filepath.Join(root, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := v.Mount(mnt)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	var once sync.Once
	var serveErr error
	go func() {
		serveErr = s.Serve()
		close(served)
	}()
	stop = func() error {
		once.Do(func() {
			if m, _ := mountinfo.Mounted(mnt); m {
				if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
					serveErr = err
					return
				}
			}
			select {
			case <-served:
				s.Device().Close()
			case <-time.After(10 * time.Second):
				serveErr = errors.New("serving did not end after the unmount")
			}
		})
		return serveErr
	}
	t.Cleanup(func() { _ = stop() })
	return mnt, s, served, stop
}

// The views mounted over FUSE on the running kernel: each file reads what
// the generators make of the reader's cgroup; a reader whose cgroup is
// not found reads nothing; nothing stays mounted after unmount.
func TestViewsMount(t *testing.T) {
	root := t.TempDir()
	h, cg := fakeHost(t, root)
	var mu sync.Mutex
	var readers []int
	v := &Views{host: h, cgroupOf: func(pid int) (*Cgroup, error) {
		mu.Lock()
		readers = append(readers, pid)
		mu.Unlock()
		// The kernel names the reading thread.
		if tgid(pid) != os.Getpid() {
			return nil, syscall.ESRCH
		}
		return cg, nil
	}}
	mnt, _, _, stop := mountViews(t, v, root)

	for _, name := range viewFiles {
		want, err := v.File(os.Getpid(), name)
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
	// Through sendfile, as busybox cat reads, each file reads whole too.
	for _, name := range viewFiles {
		want, _ := v.File(os.Getpid(), name)
		if got := sendfileAll(t, filepath.Join(mnt, "c1", name)); got != string(want) {
			t.Errorf("%s by sendfile: %q, want %q", name, got, want)
		}
	}
	// Made for the reader: a thread of this process.
	mu.Lock()
	for _, pid := range readers {
		if tgid(pid) != os.Getpid() {
			t.Errorf("made for task %d, the reader is process %d", pid, os.Getpid())
		}
	}
	mu.Unlock()
	// The reader's own CPU, as CPU 0; its memory limit.
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
	if _, err := os.ReadFile(filepath.Join(mnt, "c1", "loadavg")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("a file the views do not have: %v, want ENOENT", err)
	}
	// Each container its own inodes; the root lists none of them.
	var a, b unix.Stat_t
	if err := unix.Stat(filepath.Join(mnt, "c1", "meminfo"), &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(filepath.Join(mnt, "c2", "meminfo"), &b); err != nil {
		t.Fatal(err)
	}
	if a.Ino == b.Ino {
		t.Error("two containers share an inode")
	}
	if ents, err := os.ReadDir(mnt); err != nil || len(ents) != 0 {
		t.Errorf("the root lists %v (%v)", ents, err)
	}
	// A reader whose cgroup is not found gets the error, not the host's
	// figures.
	if out, err := exec.Command("cat", filepath.Join(mnt, "c1", "meminfo")).CombinedOutput(); err == nil {
		t.Errorf("a reader with no cgroup read %q", out)
	}

	if err := stop(); err != nil {
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
	v := &Views{host: h, cgroupOf: func(int) (*Cgroup, error) { return cg, nil }}
	mnt, first, firstDone, stop := mountViews(t, v, root)
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
	<-firstDone
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
	secondDone := make(chan error, 1)
	go func() { secondDone <- second.Serve() }()
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("first session: %v", err)
		}
		select {
		case err := <-secondDone:
			if err != nil {
				t.Errorf("second session: %v", err)
			}
			dev.Close()
		case <-time.After(10 * time.Second):
			t.Error("the second session did not end after the unmount")
		}
	})
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

// tgid returns the process of task tid, or 0.
func tgid(tid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", tid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Tgid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// Through the real views, on this kernel: a process in a cgroup below one
// limited to 256 MiB reads that limit as its MemTotal; this process reads
// its own.
func TestViewsOfReader(t *testing.T) {
	_, inner, _ := memCgroup(t)
	v, err := NewViews(Host{})
	if err != nil {
		t.Fatal(err)
	}
	mnt, _, _, _ := mountViews(t, v, t.TempDir())
	cmd := exec.Command("sh", "-c", "read x; cat "+filepath.Join(mnt, "c1", "meminfo"))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout = &out
	startIn(t, cmd, inner)
	if _, err := in.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("read the views in the cgroup: %v", err)
	}
	if got := parseMeminfo([]byte(out.String()))["MemTotal"]; got != 256*1024 {
		t.Fatalf("MemTotal %d kB in the cgroup, want %d:\n%s", got, 256*1024, out.String())
	}
	mine, err := os.ReadFile(filepath.Join(mnt, "c1", "meminfo"))
	if err != nil {
		t.Fatal(err)
	}
	if got := parseMeminfo(mine)["MemTotal"]; got == 256*1024 {
		t.Fatal("this process, outside the cgroup, read its limit")
	}
}

// sendfileAll copies path to a new file with sendfile and returns what
// arrived.
func sendfileAll(t *testing.T, path string) string {
	t.Helper()
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.CreateTemp(t.TempDir(), "sendfile")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	for {
		n, err := unix.Sendfile(int(out.Fd()), int(in.Fd()), nil, 1<<16)
		if err != nil {
			t.Fatalf("sendfile %s: %v", path, err)
		}
		if n == 0 {
			break
		}
	}
	b, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBinds(t *testing.T) {
	procAndSys := []specs.Mount{{Destination: "/proc", Type: "proc"}, {Destination: "/sys", Type: "sysfs"}}
	for _, tc := range []struct {
		name  string
		spec  []specs.Mount
		wants []string
	}{
		{"proc and sys", procAndSys, []string{"/proc/cpuinfo", "/proc/meminfo", "/sys/devices/system/cpu/online", "/proc/stat", "/proc/swaps"}},
		{"proc only", procAndSys[:1], []string{"/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/swaps"}},
		{"a bind at /proc is no proc", []specs.Mount{{Destination: "/proc", Type: "bind"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, m := range Binds("/v", "c1", tc.spec) {
				got = append(got, m.Destination)
				if m.Type != "bind" || filepath.Dir(m.Source) != "/v/c1" || !slices.Contains(m.Options, "ro") {
					t.Errorf("bind %+v", m)
				}
				if want := viewTargets[filepath.Base(m.Source)]; want != m.Destination {
					t.Errorf("%s bound at %s, want %s", m.Source, m.Destination, want)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.wants) {
				t.Errorf("binds %v, want %v", got, tc.wants)
			}
		})
	}
}

// A file is made once for a cgroup within cacheFor, and again after.
func TestViewsCache(t *testing.T) {
	root := t.TempDir()
	h, cg := fakeHost(t, root)
	clock := time.Unix(1000, 0)
	v := &Views{host: h, cgroupOf: func(int) (*Cgroup, error) { return cg, nil }, now: func() time.Time { return clock }}
	total := func() uint64 {
		t.Helper()
		b, err := v.File(1, "meminfo")
		if err != nil {
			t.Fatal(err)
		}
		return parseMeminfo(b)["MemTotal"]
	}
	if got := total(); got != 256*1024 {
		t.Fatalf("MemTotal %d", got)
	}
	writeFiles(t, cg.Memory.dir, map[string]string{"memory.limit_in_bytes": "536870912"})
	clock = clock.Add(cacheFor / 2)
	if got := total(); got != 256*1024 {
		t.Fatalf("within %s: MemTotal %d, want the one made before", cacheFor, got)
	}
	clock = clock.Add(cacheFor)
	if got := total(); got != 512*1024 {
		t.Fatalf("after %s: MemTotal %d, want the new limit", cacheFor, got)
	}
}
