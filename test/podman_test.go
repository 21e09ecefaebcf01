//go:build integration

package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var podmanBin = envOr("PODMAN", "podman")

// podmanLimits are passed to every podman run: podman's default rlimits
// exceed the hard limits of some hosts (sandboxes), for runc as for moat.
var podmanLimits = []string{"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}

// needPodman skips the test where podman is not installed, and fails it
// where the test image was not imported into podman's store.
func needPodman(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath(podmanBin); err != nil {
		t.Skipf("podman is not installed (%v): scripts/deps.sh test installs it", err)
	}
	if r := run("", podmanBin, "image", "exists", image); r.err != nil {
		t.Fatalf("podman has no image %s (scripts/testenv.sh imports it): %s", image, r)
	}
}

// podman runs podman with moat as its OCI runtime.
func podman(args ...string) result {
	return run("", podmanBin, append([]string{"--runtime", moatBin}, args...)...)
}

func mustPodman(t *testing.T, args ...string) string {
	t.Helper()
	r := podman(args...)
	if r.err != nil {
		t.Fatalf("podman %s: %s", strings.Join(args, " "), r)
	}
	return strings.TrimSpace(r.stdout)
}

// podmanRun runs `podman run` of the test image with a container name of
// the test's own and returns the name and the result. When the test ends
// the container is removed, and moat must hold nothing for it any more (no
// ID range, no mount), however it ended.
func podmanRun(t *testing.T, opts []string, args ...string) (string, result) {
	t.Helper()
	n := "moat-it-" + randomID()
	cidFile := filepath.Join(t.TempDir(), "cid")
	t.Cleanup(func() {
		podman("rm", "-f", "-t", "0", n)
		data, err := os.ReadFile(cidFile)
		id := strings.TrimSpace(string(data))
		if err != nil || id == "" {
			return // podman made no container
		}
		for _, r := range allocations(t) {
			if r.id == id {
				t.Errorf("range %d of podman container %s still allocated after podman rm", r.uid, n)
			}
		}
		for _, m := range moatMounts(t) {
			if strings.Contains(m, id) {
				t.Errorf("mount %s of podman container %s left after podman rm", m, n)
			}
		}
	})
	all := append([]string{"run", "--name", n, "--cidfile", cidFile}, podmanLimits...)
	all = append(all, opts...)
	all = append(all, image)
	return n, podman(append(all, args...)...)
}

// podmanDetached starts a detached container running args and returns its
// name.
func podmanDetached(t *testing.T, opts []string, args ...string) string {
	t.Helper()
	n, r := podmanRun(t, append([]string{"-d"}, opts...), args...)
	if r.err != nil {
		t.Fatalf("podman run -d: %s", r)
	}
	return n
}

// checkUIDMap fails unless m is a uid_map of one whole range of moat's:
// 0 <100000+k*65536> 65536.
func checkUIDMap(t *testing.T, m string) uint32 {
	t.Helper()
	m = strings.Join(strings.Fields(m), " ")
	start := mapStart(t, m)
	if !strings.HasPrefix(m, "0 ") || !strings.HasSuffix(m, " 65536") || start < 100000 || (start-100000)%65536 != 0 {
		t.Fatalf("uid_map %q, want 0 <100000+k*65536> 65536", m)
	}
	return start
}

// podman's default network is a CNI bridge in a network namespace podman
// makes beforehand, owned by the host's user namespace, with podman's
// default sysctl net.ipv4.ping_group_range=0 0: the container still gets a
// user namespace and range of its own, the namespace's devices in /sys,
// the sysctl in its own gids, and can bind port 80. --network none gives
// the same mapping.
func TestPodmanNetworks(t *testing.T) {
	needPodman(t)
	fresh := len(allocations(t)) == 0
	t.Run("default", func(t *testing.T) {
		_, r := podmanRun(t, []string{"--rm"}, "sh", "-c",
			"cat /proc/self/uid_map; ls /sys/class/net | tr '\\n' ' '; echo; cat /proc/sys/net/ipv4/ping_group_range; "+
				"echo hello > /tmp/index.html && httpd -p 80 -h /tmp && wget -q -O- http://127.0.0.1/index.html")
		if r.err != nil {
			t.Fatalf("podman run: %s", r)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 4 {
			t.Fatalf("unexpected output: %s", r)
		}
		start := checkUIDMap(t, lines[0])
		if fresh && start != 100000 {
			t.Errorf("fresh host: uid_map %q, want 0 100000 65536", lines[0])
		}
		if devs := strings.TrimSpace(lines[1]); devs != "eth0 lo" {
			t.Errorf("/sys/class/net shows %q, want the container's eth0 lo", devs)
		}
		if g := strings.Join(strings.Fields(lines[2]), " "); g != "0 0" {
			t.Errorf("ping_group_range inside: %q, want podman's 0 0", g)
		}
		if lines[3] != "hello" {
			t.Errorf("httpd on port 80 served %q", lines[3])
		}
	})
	t.Run("none", func(t *testing.T) {
		_, r := podmanRun(t, []string{"--rm", "--network", "none"}, "sh", "-c", "cat /proc/self/uid_map; ls /sys/class/net")
		if r.err != nil {
			t.Fatalf("podman run: %s", r)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 2 || lines[1] != "lo" {
			t.Fatalf("unexpected output: %s", r)
		}
		if start := checkUIDMap(t, lines[0]); fresh && start != 100000 {
			t.Errorf("fresh host: uid_map %q, want 0 100000 65536", lines[0])
		}
	})
	t.Run("host refused", func(t *testing.T) {
		_, r := podmanRun(t, []string{"--rm", "--network", "host"}, "true")
		if r.err == nil || !strings.Contains(r.stderr, "moat containers can't share namespaces [network] with the host") {
			t.Fatalf("podman run --network host: %s", r)
		}
	})
}

// podman exec runs in the container's user namespace: the same mapping as
// its init, the exit code passed on, -u honoured; the container's processes
// are unprivileged on the host.
func TestPodmanExec(t *testing.T) {
	needPodman(t)
	n := podmanDetached(t, nil, "sleep", "600")
	m := mustPodman(t, "exec", n, "cat", "/proc/self/uid_map")
	start := checkUIDMap(t, m)
	if r := podman("exec", n, "sh", "-c", "exit 5"); r.code != 5 {
		t.Errorf("podman exec of exit 5: %s", r)
	}
	if id := mustPodman(t, "exec", "-u", "1000:1000", n, "id", "-u"); id != "1000" {
		t.Errorf("podman exec -u 1000: id -u printed %q", id)
	}
	if tty := mustPodman(t, "exec", "-t", n, "tty"); !strings.HasPrefix(tty, "/dev/pts/") {
		t.Errorf("podman exec -t: tty printed %q", tty)
	}
	pid := mustPodman(t, "inspect", "-f", "{{.State.Pid}}", n)
	if uid := hostUID(t, pid); uid != start {
		t.Errorf("container init runs as host uid %d, want %d", uid, start)
	}
}

// The podman life cycle: exit codes, logs, the state podman ps and inspect
// show, stop, start, pause, kill, rm.
func TestPodmanLifecycle(t *testing.T) {
	needPodman(t)
	t.Run("exit code", func(t *testing.T) {
		if _, r := podmanRun(t, []string{"--rm"}, "sh", "-c", "exit 3"); r.code != 3 {
			t.Fatalf("want exit 3: %s", r)
		}
	})
	t.Run("stop start kill rm", func(t *testing.T) {
		n := podmanDetached(t, nil, "sh", "-c", "echo out; echo err >&2; trap 'exit 7' TERM; while true; do sleep 0.1; done")
		state := func() string {
			t.Helper()
			return mustPodman(t, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", n)
		}
		if st := state(); st != "running 0" {
			t.Fatalf("after run -d: %s", st)
		}
		if ps := mustPodman(t, "ps", "--filter", "name="+n, "--format", "{{.Status}}"); !strings.HasPrefix(ps, "Up") {
			t.Fatalf("podman ps: %q", ps)
		}
		mustPodman(t, "stop", "-t", "10", n)
		if st := state(); st != "exited 7" {
			t.Fatalf("after stop: %s, want exited 7 (the TERM trap)", st)
		}
		if ps := mustPodman(t, "ps", "-a", "--filter", "name="+n, "--format", "{{.Status}}"); !strings.HasPrefix(ps, "Exited (7)") {
			t.Fatalf("podman ps -a after stop: %q", ps)
		}
		r := podman("logs", n)
		if !strings.HasPrefix(r.stdout, "out\n") || !strings.HasPrefix(r.stderr, "err\n") {
			t.Fatalf("podman logs: %s", r)
		}
		mustPodman(t, "start", n)
		if st := state(); st != "running 0" {
			t.Fatalf("after start: %s", st)
		}
		mustPodman(t, "pause", n)
		if st := state(); st != "paused 0" {
			t.Fatalf("after pause: %s", st)
		}
		mustPodman(t, "unpause", n)
		mustPodman(t, "kill", n)
		if code := mustPodman(t, "wait", n); code != "137" {
			t.Fatalf("podman wait after kill: %s, want 137", code)
		}
		if st := state(); st != "exited 137" {
			t.Fatalf("after kill: %s", st)
		}
		mustPodman(t, "rm", n)
		if r := podman("container", "exists", n); r.code != 1 {
			t.Fatalf("container still exists after podman rm: %s", r)
		}
	})
	t.Run("rm -f", func(t *testing.T) {
		n := podmanDetached(t, nil, "sleep", "600")
		mustPodman(t, "rm", "-f", "-t", "0", n)
		if r := podman("container", "exists", n); r.code != 1 {
			t.Fatalf("container still exists after podman rm -f: %s", r)
		}
	})
}

// A host directory mounted with -v is ID-mapped: files the container
// writes land on the host with image-native IDs, as under runc, and the
// host's files show with theirs.
func TestPodmanVolume(t *testing.T) {
	needPodman(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "from-host"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	n := podmanDetached(t, []string{"-v", dir + ":/mnt"}, "sleep", "600")
	checkUIDMap(t, mustPodman(t, "exec", n, "cat", "/proc/self/uid_map"))
	if got := mustPodman(t, "exec", n, "stat", "-c", "%u:%g", "/mnt/from-host"); got != "0:0" {
		t.Errorf("host file shown inside as %s, want 0:0", got)
	}
	mustPodman(t, "exec", n, "sh", "-c", "echo hi > /mnt/root-file && mkdir /mnt/user-dir && chown 1000:1000 /mnt/user-dir")
	mustPodman(t, "exec", "-u", "1000:1000", n, "touch", "/mnt/user-dir/f")
	for file, want := range map[string]string{"root-file": "0:0", "user-dir": "1000:1000", "user-dir/f": "1000:1000"} {
		if got := statOwner(t, filepath.Join(dir, file)); got != want {
			t.Errorf("%s on the host owned by %s, want %s", file, got, want)
		}
	}
	if data, err := os.ReadFile(filepath.Join(dir, "root-file")); err != nil || string(data) != "hi\n" {
		t.Errorf("root-file: %q %v", data, err)
	}
}
