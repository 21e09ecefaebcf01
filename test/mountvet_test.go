//go:build integration

package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moatrt/moat/helper"
)

// vetScript runs each check as "name: command" in a subshell and prints
// "name=<exit status>", so that one container answers every case. A
// refused case whose set-up failed exits 0 so as not to pass for nothing.
func vetScript(checks [][2]string) string {
	var b strings.Builder
	for _, c := range checks {
		b.WriteString("(" + c[1] + ") >/dev/null 2>&1; echo " + c[0] + "=$?\n")
	}
	return b.String()
}

func statuses(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			m[k] = v
		}
	}
	return m
}

// The seed's example, and every way around it, with the capability that
// makes mount(2) reachable and with --privileged: initial mounts keep
// their read-only, nosuid, nodev and noexec flags and stay where they are;
// mounts the container makes itself are its own.
func TestMountVetting(t *testing.T) {
	checks := [][2]string{
		// refused: each must fail
		{"remount_rw", "mount -o remount,rw /mnt /mnt"},
		{"remount_rw_bind", "mount -o remount,rw,bind /mnt"},
		{"bind_then_rw", "mkdir -p /b && mount --bind /mnt /b && mount -o remount,rw,bind /b"},
		{"rbind_then_rw", "mkdir -p /rb && mount --rbind / /rb && mount -o remount,rw,bind /rb/mnt"},
		{"write_mnt", "touch /mnt/written"},
		{"umount_keys", "umount /proc/keys"},
		{"umount_lazy_keys", "umount -l /proc/keys"},
		{"umount_firmware", "umount /sys/firmware"},
		{"umount_proc", "umount -l /proc"},
		{"umount_root", "umount -l /"},
		{"move_mnt", "mkdir -p /mv && mount --move /mnt /mv"},
		{"procsys_rw", "mount -o remount,rw,bind /proc/sys"},
		{"proc_suid", "mount -o remount,bind,suid /proc"},
		{"bind_uncovers", "mkdir -p /bp && mount --bind /proc /bp"},
		{"rbind_copy_umount", "mkdir -p /rp && mount --rbind /proc /rp && umount /rp/keys"},
		// another mount namespace or root changes nothing
		{"unshare_umount_proc", "unshare -m umount -l /proc"},
		{"unshare_remount_rw", "unshare -m mount -o remount,rw,bind /mnt"},
		{"chroot_remount_rw", "chroot / mount -o remount,rw,bind /mnt"},
		// a new proc or sysfs comes with the container's masks, which
		// are protected as the originals are
		{"newproc_umount_sys", "mkdir -p /tmp/p && mount -t proc proc /tmp/p || exit 0; umount /tmp/p/sys"},
		{"newproc_sys_rw", "test -e /tmp/p/self || exit 0; mount -o remount,rw,bind /tmp/p/sys"},
		{"newproc_keys_shown", "test -e /tmp/p/self || exit 0; test -s /tmp/p/keys"},
		{"newproc_bind_uncovers", "test -e /tmp/p/self || exit 0; mkdir -p /tmp/pb && mount --bind /tmp/p /tmp/pb"},
		{"newsys_firmware_shown", "mkdir -p /tmp/s && mount -t sysfs sysfs /tmp/s || exit 0; test -n \"$(ls /tmp/s/firmware)\""},
		// allowed: each must succeed (the seed's own sequence)
		{"tmpfs", "mkdir -p /root/tmpfs && mount -t tmpfs tmpfs /root/tmpfs"},
		{"tmpfs_ro", "mount -o remount,ro /root/tmpfs /root/tmpfs"},
		{"tmpfs_rw", "mount -o remount,rw /root/tmpfs /root/tmpfs"},
		{"tmpfs_write", "touch /root/tmpfs/f"},
		{"own_bind", "mkdir -p /root/b2 && mount --bind /root/tmpfs /root/b2"},
		{"own_bind_ro", "mount -o remount,ro,bind /root/b2"},
		{"own_umount", "umount /root/b2 && umount /root/tmpfs"},
		{"mnt_ro_again", "mount -o remount,ro,bind /mnt"},
		{"newproc", "mkdir -p /tmp/p2 && mount -t proc proc /tmp/p2 && test -r /tmp/p2/self/status"},
		{"newproc_umount", "umount -l /tmp/p2"},
		{"overlay", "mkdir -p /tmp/o && mount -t tmpfs t /tmp/o && mkdir /tmp/o/l /tmp/o/u /tmp/o/w /tmp/o/m && mount -t overlay o -o lowerdir=/tmp/o/l,upperdir=/tmp/o/u,workdir=/tmp/o/w /tmp/o/m && touch /tmp/o/m/f && umount /tmp/o/m"},
		{"newsys", "mkdir -p /tmp/s2 && mount -t sysfs sysfs /tmp/s2 && test -d /tmp/s2/kernel && umount -l /tmp/s2"},
	}
	refused := map[string]bool{}
	for _, c := range checks[:23] {
		refused[c[0]] = true
	}
	// docker masks nothing for --privileged: these then work.
	unmaskedIfPrivileged := map[string]bool{"bind_uncovers": true, "newproc_keys_shown": true, "newproc_bind_uncovers": true, "newsys_firmware_shown": true}
	for _, opts := range [][]string{{"--cap-add", "SYS_ADMIN"}, {"--privileged"}} {
		privileged := opts[0] == "--privileged"
		t.Run(strings.Join(opts, " "), func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"run", "--rm", "--runtime", "moat", "--name", name(t), "-v", dir + ":/mnt:ro"}, opts...)
			args = append(args, image, "sh", "-c", vetScript(checks))
			r := docker(args...)
			if r.err != nil {
				t.Fatalf("container: %s", r)
			}
			got := statuses(r.stdout)
			for _, c := range checks {
				st, ok := got[c[0]]
				switch {
				case !ok:
					t.Errorf("%s: no result in %q", c[0], r.stdout)
				case privileged && unmaskedIfPrivileged[c[0]]:
				case refused[c[0]] && st == "0":
					t.Errorf("%s (%s) succeeded: must be refused", c[0], c[1])
				case !refused[c[0]] && st != "0":
					t.Errorf("%s (%s) failed with %s: must work", c[0], c[1], st)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "written")); err == nil {
				t.Error("the container wrote to its read-only volume")
			}
		})
	}
}

// The seed's exact words: the remount fails with EPERM, which busybox
// mount reports as "permission denied".
func TestMountVettingSeedMessage(t *testing.T) {
	dir := t.TempDir()
	r := docker("run", "--rm", "--runtime", "moat", "--cap-add", "SYS_ADMIN", "--name", name(t),
		"-v", dir+":/mnt:ro", image, "sh", "-c", "mount -o remount,rw /mnt /mnt")
	if r.err == nil || !strings.Contains(r.stderr, "permission denied") {
		t.Fatalf("want mount to fail with permission denied: %s", r)
	}
}

// The new mount API fails with ENOSYS, so that tools fall back to the
// mount(2) that is vetted; --privileged sends no seccomp profile and gets
// moat's rules anyway.
func TestNewMountAPIFails(t *testing.T) {
	probe := buildProbe(t, probeSource)
	for _, opts := range [][]string{{"--cap-add", "SYS_ADMIN"}, {"--privileged"}, {"--security-opt", "seccomp=unconfined", "--cap-add", "SYS_ADMIN"}} {
		t.Run(strings.Join(opts, " "), func(t *testing.T) {
			args := append([]string{"run", "--rm", "--runtime", "moat", "--name", name(t), "-v", probe + ":/probe:ro"}, opts...)
			r := docker(append(args, image, "/probe")...)
			if r.err != nil {
				t.Fatalf("probe: %s", r)
			}
			lines := strings.Fields(strings.TrimSpace(r.stdout))
			if len(lines) < 7 {
				t.Fatalf("probe output: %q", r.stdout)
			}
			for _, l := range lines {
				if !strings.HasSuffix(l, "=ENOSYS") {
					t.Errorf("%s: want ENOSYS", l)
				}
			}
		})
	}
}

const probeSource = `package main

import (
	"fmt"
	"golang.org/x/sys/unix"
)

func name(err error) string {
	if err == unix.ENOSYS {
		return "ENOSYS"
	}
	return fmt.Sprint(err)
}

func main() {
	_, err := unix.Fsopen("tmpfs", 0)
	fmt.Println("fsopen=" + name(err))
	_, err = unix.Fspick(unix.AT_FDCWD, "/", 0)
	fmt.Println("fspick=" + name(err))
	_, err = unix.OpenTree(unix.AT_FDCWD, "/", unix.OPEN_TREE_CLONE)
	fmt.Println("open_tree=" + name(err))
	err = unix.MoveMount(unix.AT_FDCWD, "/", unix.AT_FDCWD, "/tmp", 0)
	fmt.Println("move_mount=" + name(err))
	err = unix.MountSetattr(unix.AT_FDCWD, "/", 0, &unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY})
	fmt.Println("mount_setattr=" + name(err))
	_, err = unix.Fsmount(-1, 0, 0)
	fmt.Println("fsmount=" + name(err))
	err = unix.FsconfigSetFlag(-1, "ro")
	fmt.Println("fsconfig=" + name(err))
}
`

// buildProbe builds a static program that calls each new mount API and
// prints what it got.
func buildProbe(t *testing.T, source string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(source), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "probe")
	cmd := exec.Command("go", "build", "-o", out, filepath.Join(dir, "main.go"))
	// Built in this module, which has x/sys; the tests run in its test dir.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Dir = filepath.Dir(wd)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build probe: %v: %s", err, b)
	}
	return out
}

// An attacker that races the helper: one thread flips the path a
// read-write remount names between a mount of the container's own and a
// read-only volume, while another makes the call thousands of times. The
// helper decides on its own copy of the path and acts on the mount it
// vetted, so the volume stays read-only however the race falls.
func TestMountVettingRace(t *testing.T) {
	probe := buildProbe(t, raceSource)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, opts := range [][]string{{"--cap-add", "SYS_ADMIN"}, {"--privileged"}} {
		t.Run(strings.Join(opts, " "), func(t *testing.T) {
			args := append([]string{"run", "--rm", "--runtime", "moat", "--name", name(t),
				"-v", dir + ":/mnt:ro", "-v", probe + ":/race:ro"}, opts...)
			script := "mkdir -p /root/own && mount -t tmpfs -o ro tmpfs /root/own && /race /mnt /root/own 3000; " +
				"touch /mnt/raced && echo WROTE; grep ' /mnt ' /proc/self/mountinfo"
			r := docker(append(args, image, "sh", "-c", script)...)
			if r.err != nil {
				t.Fatalf("race: %s", r)
			}
			if strings.Contains(r.stdout, "WROTE") {
				t.Fatalf("the volume became writable: %s", r)
			}
			if _, err := os.Stat(filepath.Join(dir, "raced")); err == nil {
				t.Fatal("the container wrote to its read-only volume")
			}
			got := statuses(strings.ReplaceAll(r.stdout, " ", "\n"))
			if got["ok"] == "0" || got["refused"] == "0" || got["ok"] == "" {
				t.Errorf("the race did not hit both targets (%q): it proves nothing", r.stdout)
			}
			t.Logf("race: %s", strings.TrimSpace(r.stdout))
		})
	}
}

const raceSource = `package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	prot, own := os.Args[1], os.Args[2]
	n, _ := strconv.Atoi(os.Args[3])
	var buf [256]byte
	set := func(s string) { copy(buf[:], s); buf[len(s)] = 0 }
	set(own)
	var stop atomic.Bool
	go func() {
		runtime.LockOSThread()
		for i := 0; !stop.Load(); i++ {
			if i%2 == 0 {
				set(prot)
			} else {
				set(own)
			}
		}
	}()
	ok, refused := 0, 0
	for i := 0; i < n; i++ {
		_, _, e := unix.Syscall6(unix.SYS_MOUNT, 0, uintptr(unsafe.Pointer(&buf[0])), 0,
			unix.MS_REMOUNT|unix.MS_BIND, 0, 0)
		if e == 0 {
			ok++
		} else {
			refused++
		}
	}
	stop.Store(true)
	fmt.Printf("ok=%d refused=%d\n", ok, refused)
}
`

// Only root may use the helper's socket.
func TestHelperSocketRootOnly(t *testing.T) {
	n := dockerRun(t, []string{"--cap-add", "SYS_ADMIN"}, "sleep", "600")
	st := must(t, moatBin, "helper", "status")
	if !strings.Contains(st, "pid: ") {
		t.Fatalf("helper status: %q", st)
	}
	id := strings.TrimSpace(mustDocker(t, "inspect", "-f", "{{.Id}}", n))
	if !strings.Contains(st, id) {
		t.Errorf("helper status does not list %s: %q", id, st)
	}
	r := run("", "setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", moatBin, "helper", "status")
	if r.err == nil {
		t.Errorf("a non-root user reached the helper: %s", r)
	}
}

// checkVetted shows that container n's mount calls are vetted: a protected
// mount stays protected, and a call the container may make is carried out
// (it would fail with no helper to answer it).
func checkVetted(t *testing.T, n string) {
	t.Helper()
	out := mustDocker(t, "exec", n, "sh", "-c", vetScript([][2]string{
		{"remount_rw", "mount -o remount,rw,bind /mnt"},
		{"umount_proc", "umount -l /proc"},
		{"tmpfs", "mkdir -p /root/k && mount -t tmpfs k /root/k && umount /root/k"},
	}))
	got := statuses(out)
	if got["remount_rw"] == "0" || got["umount_proc"] == "0" {
		t.Errorf("%s: a protected mount changed: %q", n, out)
	}
	if got["tmpfs"] != "0" {
		t.Errorf("%s: its own tmpfs mount failed, so nobody vets its calls: %q", n, out)
	}
}

// waitServed waits until a helper with a keeper serves every container
// in ids and replaced(status) holds, and returns its status and how long
// that took.
func waitServed(t *testing.T, ids []string, replaced func(*helper.Status) bool) (*helper.Status, time.Duration) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for {
		st, err := helper.GetStatus()
		if err == nil && st.KeeperPid != 0 && containsAll(st.Containers, ids) && replaced(st) {
			return st, time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new helper serves %v 30s after the kill: %v %v", ids, st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func containsAll(have, want []string) bool {
	set := map[string]bool{}
	for _, h := range have {
		set[h] = true
	}
	for _, w := range want {
		if !set[w] {
			return false
		}
	}
	return true
}

// isHelperProcess reports whether pid is a moat helper or keeper, so that
// a test kills only the processes its containers started.
func isHelperProcess(pid int) bool {
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(cmd), "\x00helper\x00")
}

func kill9(t *testing.T, pid int) {
	t.Helper()
	if !isHelperProcess(pid) {
		t.Fatalf("process %d is not moat's helper", pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
}

// kill -9 of the helper, then of its keeper: the containers keep running
// and their calls are vetted again by the helper that takes over.
func TestHelperKilled(t *testing.T) {
	var names, ids []string
	for _, opts := range [][]string{{"--cap-add", "SYS_ADMIN"}, {"--privileged"}} {
		dir := t.TempDir()
		n := dockerRun(t, append([]string{"-v", dir + ":/mnt:ro"}, opts...), "sleep", "600")
		names = append(names, n)
		ids = append(ids, strings.TrimSpace(mustDocker(t, "inspect", "-f", "{{.Id}}", n)))
	}
	st, err := helper.GetStatus()
	if err != nil {
		t.Fatal(err)
	}
	for _, victim := range []string{"helper", "keeper", "helper"} {
		old := *st
		replaced := func(now *helper.Status) bool { return now.Pid != old.Pid }
		pid := old.Pid
		if victim == "keeper" {
			replaced = func(now *helper.Status) bool { return now.KeeperPid != old.KeeperPid }
			pid = old.KeeperPid
		}
		kill9(t, pid)
		var took time.Duration
		st, took = waitServed(t, ids, replaced)
		t.Logf("kill -9 of the %s: served again after %s", victim, took)
		for _, n := range names {
			if state := strings.TrimSpace(mustDocker(t, "inspect", "-f", "{{.State.Status}}", n)); state != "running" {
				t.Fatalf("%s is %s after the kill of the %s", n, state, victim)
			}
			checkVetted(t, n)
		}
	}
}

// A kill -9 of the helper while calls are in flight: a call the dead
// helper took and never answered is restarted for the next helper, so no
// caller waits forever. Four loops mount and unmount all the time, so most
// kills land inside a call.
func TestHelperKilledMidCall(t *testing.T) {
	const loops = 4
	script := `mkdir -p /root/m$1; i=0; while :; do mount -t tmpfs m /root/m$1 && umount /root/m$1 && i=$((i+1)) && echo $i > /root/count$1; done`
	start := "for n in $(seq " + strconv.Itoa(loops) + "); do sh -c '" + script + "' sh $n & done; wait"
	n := dockerRun(t, []string{"--cap-add", "SYS_ADMIN"}, "sh", "-c", start)
	id := strings.TrimSpace(mustDocker(t, "inspect", "-f", "{{.Id}}", n))
	counts := func() []int {
		out := mustDocker(t, "exec", n, "sh", "-c", "for n in $(seq "+strconv.Itoa(loops)+"); do c=$(cat /root/count$n 2>/dev/null); echo ${c:-0}; done")
		var cs []int
		for _, f := range strings.Fields(out) {
			c, _ := strconv.Atoi(f)
			cs = append(cs, c)
		}
		if len(cs) != loops {
			t.Fatalf("counts: %q", out)
		}
		return cs
	}
	// Every loop goes on: a stranded caller would stop its loop for good.
	// (A count being rewritten reads as 0: that poll just tries again.)
	advance := func(round int) {
		t.Helper()
		before := counts()
		deadline := time.Now().Add(30 * time.Second)
		for {
			now := counts()
			stuck := -1
			for i := range now {
				if now[i] <= before[i] {
					stuck = i
				}
			}
			if stuck < 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: loop %d has made no call since %v (counts %v)", round, stuck+1, before, now)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	st, err := helper.GetStatus()
	if err != nil {
		t.Fatal(err)
	}
	advance(0)
	for round := 1; round <= 6; round++ {
		old := *st
		kill9(t, old.Pid)
		st, _ = waitServed(t, []string{id}, func(now *helper.Status) bool { return now.Pid != old.Pid })
		advance(round)
	}
	checkVetted(t, n)
}

// Creates racing a kill of the helper either get vetting or fail, and a
// failed one leaves nothing (TestMain checks ranges and mounts).
func TestHelperKilledDuringCreate(t *testing.T) {
	// The kill lands from the start of a create to past its hand-over.
	for i := 0; i < 12; i++ {
		dir := t.TempDir()
		n := name(t)
		done := make(chan result, 1)
		go func() {
			done <- docker("run", "-d", "--runtime", "moat", "--name", n, "--cap-add", "SYS_ADMIN", "-v", dir+":/mnt:ro", image, "sleep", "600")
		}()
		time.Sleep(time.Duration(i*60) * time.Millisecond)
		if st, err := helper.GetStatus(); err == nil && isHelperProcess(st.Pid) {
			kill9(t, st.Pid)
		}
		r := <-done
		if r.err != nil {
			t.Logf("create %d failed as the helper died: %s", i, strings.TrimSpace(r.stderr))
			docker("rm", "-f", n)
			continue
		}
		t.Logf("create %d got vetting", i)
		checkVetted(t, n)
	}
}

// The helper and its keeper exit once no container is left, and the next
// create starts them again.
func TestHelperIdleExit(t *testing.T) {
	n := dockerRun(t, []string{"--cap-add", "SYS_ADMIN"}, "sleep", "600")
	st, err := helper.GetStatus()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Containers) != 1 {
		t.Skipf("other moat containers run (%v): the helper cannot go idle", st.Containers)
	}
	mustDocker(t, "rm", "-f", n)
	deadline := time.Now().Add(helper.IdleExit + 30*time.Second)
	for isHelperProcess(st.Pid) || isHelperProcess(st.KeeperPid) {
		if time.Now().After(deadline) {
			t.Fatalf("helper %d or keeper %d still runs %s after the last container went", st.Pid, st.KeeperPid, helper.IdleExit+30*time.Second)
		}
		time.Sleep(time.Second)
	}
	if _, err := helper.GetStatus(); err == nil {
		t.Fatal("a helper answers with no container left")
	}
	n2 := dockerRun(t, []string{"--cap-add", "SYS_ADMIN", "-v", t.TempDir() + ":/mnt:ro"}, "sleep", "600")
	st2, err := helper.GetStatus()
	if err != nil {
		t.Fatalf("no helper for the next container: %v", err)
	}
	if st2.Pid == st.Pid {
		t.Fatalf("the old helper %d answers", st.Pid)
	}
	checkVetted(t, n2)
}
