package mountvet

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// target is a process in user and mount namespaces of its own, as a
// container's init is, and a directory it may mount on.
type target struct {
	pid int
	dir string
}

func startTarget(t testing.TB) target {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	// Not t.TempDir: its parent is closed to the target's root, which
	// host root does not own.
	dir, err := os.MkdirTemp("", "moat-worker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 300000, Size: 65536}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 300000, Size: 65536}},
		GidMappingsEnableSetgroups: true,
		// Its root, with the capabilities root has there.
		Credential: &syscall.Credential{Uid: 0, Gid: 0},
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// The maps are written before the process runs sleep: wait for that.
	deadline := time.Now().Add(5 * time.Second)
	for {
		exe, _ := os.Readlink("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/exe")
		if filepath.Base(exe) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the target never ran sleep")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return target{pid: cmd.Process.Pid, dir: dir}
}

func (tg target) caller(t testing.TB, k *call) *caller {
	cl, err := openCaller(uint32(tg.pid), k)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	for _, i := range []int{nsUser, nsMnt} {
		if err := cl.openNS(i); err != nil {
			t.Fatal(err)
		}
	}
	return cl
}

func (tg target) worker(t testing.TB, cl *caller) *worker {
	w, err := startWorker(cl.ns[nsUser], cl.ns[nsMnt], cl.userNS, cl.mntNS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if w.w != nil {
			w.stop()
		}
	})
	return w
}

func (tg target) mountAt(t testing.TB, dir string) *int {
	t.Helper()
	ms, err := readMounts(tg.pid)
	if err != nil {
		t.Fatal(err)
	}
	var id *int
	for _, m := range ms {
		if m.Mountpoint == dir {
			id = &m.ID
		}
	}
	return id
}

func openFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// The worker mounts and unmounts in the target's namespaces; what it
// reports of a mount is what the target's mountinfo says; a refused call
// is not carried out; it leaves no file open behind.
func TestWorker(t *testing.T) {
	tg := startTarget(t)
	tmpfs := "tmpfs"
	k := &call{target: &tg.dir, fstype: &tmpfs}
	cl := tg.caller(t, k)
	w := tg.worker(t, cl)
	before := openFDs(t)

	for i := 0; i < 3; i++ {
		r, held := w.call(cl, request{op: opNew, target: tg.dir, source: "x", fstype: &tmpfs, data: strPtr("mode=0700")})
		if e, why := r.outcome(); e != 0 || held {
			t.Fatalf("mount: %v (%s), held %v", e, why, held)
		}
		id := tg.mountAt(t, tg.dir)
		if id == nil {
			t.Fatal("the tmpfs is not in the target's mount table")
		}

		// Refused: the mount stays.
		r, held = w.call(cl, request{op: opUmount, target: tg.dir, hold: true})
		if !held {
			t.Fatalf("umount not held: %v", r)
		}
		want := findMount(t, tg.pid, *id)
		if got := r.target.info; !r.target.root || got == nil || got.ID != want.ID || got.Parent != want.Parent ||
			got.Major != want.Major || got.Minor != want.Minor || got.Root != want.Root ||
			got.Mountpoint != want.Mountpoint || flagsOf(got.Options) != flagsOf(want.Options) {
			t.Fatalf("worker saw %+v (root %v), mountinfo says %+v", got, r.target.root, want)
		}
		if e, _ := w.verdict(false).outcome(); e != 0 {
			t.Fatalf("refused umount: %v", e)
		}
		if tg.mountAt(t, tg.dir) == nil {
			t.Fatal("a refused umount was carried out")
		}

		// Allowed: it goes.
		if _, held = w.call(cl, request{op: opUmount, target: tg.dir, hold: true}); !held {
			t.Fatal("umount not held")
		}
		if e, why := w.verdict(true).outcome(); e != 0 {
			t.Fatalf("umount: %v (%s)", e, why)
		}
		if tg.mountAt(t, tg.dir) != nil {
			t.Fatal("the tmpfs is still mounted")
		}
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d files open before the calls, %d after", before, after)
	}

	// What the caller cannot resolve, the worker reports as the caller's error.
	r, held := w.call(cl, request{op: opUmount, target: tg.dir + "/nonexistent", hold: true})
	if e, _ := r.outcome(); held || e != unix.ENOENT {
		t.Fatalf("umount of a missing path: %v, held %v", e, held)
	}
	// Without CAP_SYS_ADMIN, the kernel refuses the caller's mount.
	weak := *cl
	weak.capEff = 0
	r, _ = w.call(&weak, request{op: opNew, target: tg.dir, source: "x", fstype: &tmpfs})
	if e, _ := r.outcome(); e != unix.EPERM {
		t.Fatalf("mount with no capabilities: %v, want EPERM", e)
	}
}

// A worker that dies fails its calls with EPERM and reports it is gone.
func TestWorkerKilled(t *testing.T) {
	tg := startTarget(t)
	tmpfs := "tmpfs"
	k := &call{target: &tg.dir, fstype: &tmpfs}
	cl := tg.caller(t, k)
	w := tg.worker(t, cl)
	if err := unix.Kill(int(w.w.pid), unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !w.gone() {
		if time.Now().After(deadline) {
			t.Fatal("the killed worker is not gone")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r, _ := w.call(cl, request{op: opNew, target: tg.dir, source: "x", fstype: &tmpfs})
	if e, _ := r.outcome(); e != unix.EPERM {
		t.Fatalf("call of a dead worker: %v, want EPERM", e)
	}
	if tg.mountAt(t, tg.dir) != nil {
		t.Fatal("a dead worker mounted")
	}
}

func findMount(t testing.TB, pid, id int) *mountinfo.Info {
	ms, err := readMounts(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.ID == id {
			return m
		}
	}
	t.Fatalf("mount %d not in the table of %d", id, pid)
	return nil
}

func strPtr(s string) *string { return &s }

// BenchmarkWorker is one mount and one vetted umount of a tmpfs, as the
// helper carries them out.
func BenchmarkWorker(b *testing.B) {
	tg := startTarget(b)
	tmpfs := "tmpfs"
	k := &call{target: &tg.dir, fstype: &tmpfs}
	cl := tg.caller(b, k)
	w := tg.worker(b, cl)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r, _ := w.call(cl, request{op: opNew, target: tg.dir, source: "x", fstype: &tmpfs}); r.stage != 0 {
			b.Fatal(r)
		}
		if r, held := w.call(cl, request{op: opUmount, target: tg.dir, hold: true}); !held {
			b.Fatal(r)
		}
		if r := w.verdict(true); r.stage != 0 {
			b.Fatal(r)
		}
	}
}
