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
	"github.com/moatrt/moat/internal/fstest"
)

// TestMain checks, after every test, that moat holds nothing for containers
// that are gone: no ID range of a test root or of docker, no rootfs mount.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if msg := leftovers(); msg != "" {
			fmt.Println("FAIL: moat left state behind after the tests:\n" + msg)
			code = 1
		}
	}
	os.Exit(code)
}

func isTmpfs(path string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(path, &st) == nil && st.Type == 0x01021994 // TMPFS_MAGIC
}

func leftovers() string {
	var b strings.Builder
	out, err := exec.Command(moatBin, "ids", "--format", "table").Output()
	if err != nil {
		return "moat ids: " + err.Error()
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n")[1:] {
		if strings.Contains(l, "/run/moat-it/") || strings.Contains(l, "moby") || strings.Contains(l, "moat-it") {
			fmt.Fprintf(&b, "range still allocated: %s\n", l)
		}
	}
	ms, _ := fstest.Mounts(moatMountDir)
	for _, m := range ms {
		fmt.Fprintf(&b, "mount still present: %s\n", m.Mountpoint)
	}
	// On a cgroup v1 host /sys/fs/cgroup is a tmpfs: a file there that is
	// not a cgroup hierarchy was written by mistake.
	if st, err := os.Stat("/sys/fs/cgroup/cgroup.procs"); err == nil && st.Mode().IsRegular() && isTmpfs("/sys/fs/cgroup") {
		fmt.Fprintf(&b, "a regular file at /sys/fs/cgroup/cgroup.procs on the cgroup tmpfs\n")
	}
	// The mount-vetting helper exits by itself once no container is left.
	deadline := time.Now().Add(helper.IdleExit + 30*time.Second)
	for {
		st, err := helper.GetStatus()
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(&b, "helper %d still running, serving %v\n", st.Pid, st.Containers)
			break
		}
		time.Sleep(time.Second)
	}
	// The helper unmounts the /proc and /sys views when it goes.
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(mi), " - fuse.moat-views ") {
		fmt.Fprintf(&b, "the /proc and /sys views are still mounted at %s\n", helper.ViewsDir)
	}
	return b.String()
}

// The seed's uid_map outputs: the first container maps to 100000 on a fresh
// host, a second one beside it to the next 64K range; --userns=host and
// --privileged change nothing; docker exec sees the same mapping.
func TestUIDMap(t *testing.T) {
	fresh := len(allocations(t)) == 0
	first := dockerRun(t, nil, "sleep", "600")
	second := dockerRun(t, nil, "sleep", "600")
	m1 := uidMap(t, first, "/proc/self/uid_map")
	m2 := uidMap(t, second, "/proc/self/uid_map")
	if fresh {
		if m1 != "0 100000 65536" || m2 != "0 165536 65536" {
			t.Fatalf("fresh host: got %q and %q, want %q and %q", m1, m2, "0 100000 65536", "0 165536 65536")
		}
	}
	s1, s2 := mapStart(t, m1), mapStart(t, m2)
	if s1 == s2 || s1 < 100000 || s2 < 100000 {
		t.Fatalf("ranges not exclusive: %q and %q", m1, m2)
	}
	if g := uidMap(t, first, "/proc/self/gid_map"); g != m1 {
		t.Errorf("gid_map %q differs from uid_map %q", g, m1)
	}

	for _, opts := range [][]string{{"--userns=host"}, {"--privileged"}} {
		t.Run(strings.Join(opts, " "), func(t *testing.T) {
			n := name(t)
			out := mustDocker(t, append(append([]string{"run", "--rm", "--runtime", "moat", "--name", n}, opts...), image, "cat", "/proc/self/uid_map")...)
			m := strings.Join(strings.Fields(out), " ")
			if !strings.HasPrefix(m, "0 ") || !strings.HasSuffix(m, " 65536") || mapStart(t, m) < 100000 {
				t.Fatalf("%v: uid_map %q, want 0 <host range> 65536", opts, m)
			}
			if mapStart(t, m) == s1 || mapStart(t, m) == s2 {
				t.Fatalf("%v: range %q shared with a running container", opts, m)
			}
		})
	}

	// The container's processes are unprivileged on the host.
	pid := mustDocker(t, "inspect", "-f", "{{.State.Pid}}", first)
	if uid := hostUID(t, pid); uid != s1 {
		t.Errorf("container init runs as host uid %d, want %d", uid, s1)
	}
}

func mapStart(t *testing.T, m string) uint32 {
	t.Helper()
	f := strings.Fields(m)
	if len(f) != 3 {
		t.Fatalf("malformed map %q", m)
	}
	n, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		t.Fatalf("malformed map %q", m)
	}
	return uint32(n)
}

func hostUID(t *testing.T, pid string) uint32 {
	t.Helper()
	data, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "Uid:") {
			n, _ := strconv.ParseUint(strings.Fields(l)[1], 10, 32)
			return uint32(n)
		}
	}
	t.Fatalf("no Uid in /proc/%s/status", pid)
	return 0
}

// The ordinary docker life cycle works as with runc.
func TestDockerLifecycle(t *testing.T) {
	t.Run("exit code", func(t *testing.T) {
		r := docker("run", "--rm", "--runtime", "moat", image, "sh", "-c", "exit 3")
		if r.code != 3 {
			t.Fatalf("want exit 3: %s", r)
		}
	})
	t.Run("stop kill restart", func(t *testing.T) {
		n := dockerRun(t, nil, "sh", "-c", "trap 'exit 7' TERM; while true; do sleep 0.1; done")
		mustDocker(t, "stop", "-t", "10", n)
		if code := mustDocker(t, "inspect", "-f", "{{.State.ExitCode}}", n); code != "7" {
			t.Fatalf("stop: exit code %s, want 7 (the TERM trap)", code)
		}
		mustDocker(t, "start", n)
		mustDocker(t, "restart", "-t", "10", n)
		if st := mustDocker(t, "inspect", "-f", "{{.State.Status}}", n); st != "running" {
			t.Fatalf("after restart: %s", st)
		}
		mustDocker(t, "kill", n)
		if code := mustDocker(t, "inspect", "-f", "{{.State.ExitCode}}", n); code != "137" {
			t.Fatalf("kill: exit code %s, want 137", code)
		}
	})
	t.Run("pause unpause", func(t *testing.T) {
		n := dockerRun(t, nil, "sleep", "600")
		mustDocker(t, "pause", n)
		if st := mustDocker(t, "inspect", "-f", "{{.State.Status}}", n); st != "paused" {
			t.Fatalf("after pause: %s", st)
		}
		mustDocker(t, "unpause", n)
		if out := mustDocker(t, "exec", n, "echo", "alive"); out != "alive" {
			t.Fatalf("exec after unpause: %q", out)
		}
	})
	t.Run("rm -f", func(t *testing.T) {
		n := dockerRun(t, nil, "sleep", "600")
		mustDocker(t, "rm", "-f", n)
		if r := docker("inspect", n); r.code == 0 {
			t.Fatalf("container still exists after rm -f")
		}
	})
	t.Run("logs", func(t *testing.T) {
		n := dockerRun(t, nil, "sh", "-c", "echo out; echo err >&2")
		mustDocker(t, "wait", n)
		r := docker("logs", n)
		if strings.TrimSpace(r.stdout) != "out" || strings.TrimSpace(r.stderr) != "err" {
			t.Fatalf("logs: %s", r)
		}
	})
	t.Run("tty", func(t *testing.T) {
		out := mustDocker(t, "run", "--rm", "-t", "--runtime", "moat", image, "tty")
		if !strings.HasPrefix(strings.TrimSpace(out), "/dev/pts/") {
			t.Fatalf("docker run -t: tty printed %q", out)
		}
		// -it needs a terminal on our side too: script(1) gives one.
		if _, err := exec.LookPath("script"); err != nil {
			t.Skip("script(1) not installed")
		}
		out = must(t, "script", "-qec", dockerBin+" run --rm -it --runtime moat "+image+" sh -c 'tty; echo in=$(head -c 0 </dev/stdin; echo ok)'", "/dev/null")
		if !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "in=ok") {
			t.Fatalf("docker run -it: %q", out)
		}
	})
	t.Run("top stats update", func(t *testing.T) {
		n := dockerRun(t, nil, "sleep", "600")
		if out := mustDocker(t, "top", n); !strings.Contains(out, "sleep 600") {
			t.Fatalf("docker top: %q", out)
		}
		if out := mustDocker(t, "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", n); !strings.HasPrefix(out, n+" ") {
			t.Fatalf("docker stats: %q", out)
		}
		mustDocker(t, "update", "--memory", "64m", "--memory-swap", "128m", n)
		limit := mustDocker(t, "exec", n, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
		if limit != strconv.Itoa(64<<20) {
			t.Fatalf("memory limit after update: %s", limit)
		}
	})
}

// Image files belong to the container's root inside, files it writes are
// stored with image-native IDs, and docker's tools see them as with runc.
func TestOwnership(t *testing.T) {
	n := dockerRun(t, nil, "sleep", "600")
	if out := mustDocker(t, "exec", n, "stat", "-c", "%u:%g", "/", "/bin/busybox", "/home/user"); out != "0:0\n0:0\n1000:1000" {
		t.Fatalf("image ownership inside: %q", out)
	}
	mustDocker(t, "exec", n, "sh", "-c", "echo root > /root-file && mkdir /root-dir")
	mustDocker(t, "exec", "-u", "1000:1000", n, "sh", "-c", "echo user > /tmp/user-file")
	upper := mustDocker(t, "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", n)
	for file, want := range map[string]string{"root-file": "0:0", "root-dir": "0:0", "tmp/user-file": "1000:1000"} {
		if got := statOwner(t, filepath.Join(upper, file)); got != want {
			t.Errorf("%s on disk owned by %s, want %s", file, got, want)
		}
	}
	diff := mustDocker(t, "diff", n)
	for _, want := range []string{"A /root-file", "A /root-dir", "A /tmp/user-file"} {
		if !strings.Contains(diff, want) {
			t.Errorf("docker diff lacks %q:\n%s", want, diff)
		}
	}
	// docker cp reads docker's own overlay, which moat leaves in place.
	dir := t.TempDir()
	mustDocker(t, "cp", n+":/root-file", dir)
	if data, _ := os.ReadFile(filepath.Join(dir, "root-file")); string(data) != "root\n" {
		t.Errorf("docker cp: %q", data)
	}
	// The committed image, run with runc, shows the file as root's.
	img := "moat-it-commit-" + randomID()
	mustDocker(t, "commit", n, img)
	t.Cleanup(func() { docker("rmi", "-f", img) })
	if out := mustDocker(t, "run", "--rm", "--runtime", "runc", img, "stat", "-c", "%u:%g", "/root-file", "/tmp/user-file"); out != "0:0\n1000:1000" {
		t.Fatalf("committed image under runc: %q", out)
	}
	// Docker's /etc files stay writable by the container's root.
	mustDocker(t, "exec", n, "sh", "-c", "echo 10.9.9.9 extra >> /etc/hosts && echo x > /etc/hostname && cat /etc/resolv.conf >/dev/null && echo '# x' >> /etc/resolv.conf")
}

func statOwner(t *testing.T, path string) string {
	t.Helper()
	return must(t, "stat", "-c", "%u:%g", path)
}

// A volume is shared by containers with different ranges: files keep
// image-native IDs on the host.
func TestVolumeShared(t *testing.T) {
	vol := "moat-it-vol-" + randomID()
	mustDocker(t, "volume", "create", vol)
	t.Cleanup(func() { docker("volume", "rm", "-f", vol) })
	a := dockerRun(t, []string{"-v", vol + ":/data"}, "sleep", "600")
	b := dockerRun(t, []string{"-v", vol + ":/data"}, "sleep", "600")
	if uidMap(t, a, "/proc/self/uid_map") == uidMap(t, b, "/proc/self/uid_map") {
		t.Fatal("two running containers share a range")
	}
	mustDocker(t, "exec", a, "sh", "-c", "echo from-a > /data/f && mkdir /data/d")
	mp := mustDocker(t, "volume", "inspect", "-f", "{{.Mountpoint}}", vol)
	if got := statOwner(t, filepath.Join(mp, "f")); got != "0:0" {
		t.Fatalf("volume file on host owned by %s, want 0:0", got)
	}
	mustDocker(t, "exec", b, "sh", "-c", "cat /data/f && echo from-b >> /data/f && touch /data/d/g")
	if data, _ := os.ReadFile(filepath.Join(mp, "f")); string(data) != "from-a\nfrom-b\n" {
		t.Fatalf("volume file: %q", data)
	}
	// A host directory bind-mounted works the same way.
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	c := dockerRun(t, []string{"-v", dir + ":/host"}, "sleep", "600")
	mustDocker(t, "exec", c, "sh", "-c", "echo hi > /host/h")
	if got := statOwner(t, filepath.Join(dir, "h")); got != "0:0" {
		t.Fatalf("bind-mounted file on host owned by %s, want 0:0", got)
	}
}

// A running container leaves nothing of moat's in the host's mount table:
// its init has its own copies of the rootfs and the volumes, and moat takes
// its staging mounts off the host once the container is created. The
// container still reads and writes through them.
func TestNoHostMountsWhileRunning(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	n := dockerRun(t, []string{"-v", dir + ":/mnt"}, "sleep", "600")
	id := mustDocker(t, "inspect", "-f", "{{.Id}}", n)
	for _, m := range moatMounts(t) {
		if strings.Contains(m, id) {
			t.Errorf("mount %s on the host while %s runs", m, n)
		}
	}
	mustDocker(t, "exec", n, "sh", "-c", "echo from-container >/mnt/f && echo root >/root/f && cat /root/f /etc/hostname")
	if got, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(got) != "from-container\n" {
		t.Errorf("volume file on the host: %q, %v", got, err)
	}
	// docker cp goes through docker's own mount of the same layers.
	mustDocker(t, "cp", n+":/root/f", filepath.Join(dir, "copied"))
	if got, err := os.ReadFile(filepath.Join(dir, "copied")); err != nil || string(got) != "root\n" {
		t.Errorf("docker cp of a file the container wrote: %q, %v", got, err)
	}
}

// Removing every container frees its range and its mounts.
func TestCleanupAfterRemove(t *testing.T) {
	n := dockerRun(t, nil, "sleep", "600")
	id := mustDocker(t, "inspect", "-f", "{{.Id}}", n)
	held := func() bool {
		for _, r := range allocations(t) {
			if r.id == id {
				return true
			}
		}
		return false
	}
	if !held() {
		t.Fatalf("running container %s holds no range", id)
	}
	mustDocker(t, "rm", "-f", n)
	// dockerd deletes through the shim asynchronously after rm returns.
	for i := 0; i < 50 && held(); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if held() {
		t.Fatalf("range of %s still allocated after docker rm -f", id)
	}
	for _, m := range moatMounts(t) {
		if strings.Contains(m, id) {
			t.Fatalf("mount %s left after docker rm -f", m)
		}
	}
}
