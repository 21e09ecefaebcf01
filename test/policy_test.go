//go:build integration

package test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Sharing a host namespace fails create with one message naming every
// shared namespace, and leaves nothing behind.
func TestHostNamespacesRejected(t *testing.T) {
	before := takeSnapshot(t, dockerRoot)
	for _, c := range []struct {
		flag string
		want string
	}{
		{"--pid=host", "[pid]"},
		{"--network=host", "network"},
		{"--ipc=host", "[ipc]"},
		{"--uts=host", "[uts]"},
	} {
		t.Run(c.flag, func(t *testing.T) {
			n := name(t)
			r := docker("run", "--rm", "--runtime", "moat", "--name", n, c.flag, image, "true")
			if r.code == 0 {
				t.Fatalf("%s accepted: %s", c.flag, r)
			}
			msg := "OCI runtime create failed: error in the container spec: invalid or unsupported container spec: moat containers can't share namespaces "
			if !strings.Contains(r.stderr, msg) || !strings.Contains(r.stderr, c.want) ||
				!strings.Contains(r.stderr, "with the host (because they use the linux user-namespace for isolation)") {
				t.Fatalf("%s: unexpected error: %s", c.flag, r)
			}
		})
	}
	checkUnchanged(t, dockerRoot, before)
}

// A container that joins another moat container's namespaces runs in that
// container's user namespace, holds its range as a shared one, and gives it
// back on removal; the first container's range stays until it goes too.
func TestJoinContainerNamespaces(t *testing.T) {
	first := dockerRun(t, []string{"--ipc=shareable"}, "sleep", "600")
	firstMap := uidMap(t, first, "/proc/self/uid_map")
	nsOf := func(container, kind string) string {
		return strings.TrimSpace(mustDocker(t, "exec", container, "readlink", "/proc/self/ns/"+kind))
	}
	for _, c := range []struct{ flag, ns string }{
		{"--network=container:", "net"},
		{"--pid=container:", "pid"},
		{"--ipc=container:", "ipc"},
	} {
		t.Run(c.flag, func(t *testing.T) {
			joiner := dockerRun(t, []string{c.flag + first}, "sleep", "600")
			if got := uidMap(t, joiner, "/proc/self/uid_map"); got != firstMap {
				t.Fatalf("joiner maps %q, want the joined container's %q", got, firstMap)
			}
			if got, want := nsOf(joiner, c.ns), nsOf(first, c.ns); got != want {
				t.Fatalf("%s: joiner is in %s, want %s", c.flag, got, want)
			}
			if got, own := nsOf(joiner, "user"), nsOf(first, "user"); got != own {
				t.Fatalf("joiner is in user namespace %s, want the joined container's %s", got, own)
			}
			shared := 0
			for _, r := range allocations(t) {
				if r.uid == mapStart(t, firstMap) {
					shared++
				}
			}
			if shared != 2 {
				t.Fatalf("%d holders of range %d, want the container and its joiner", shared, mapStart(t, firstMap))
			}
			mustDocker(t, "rm", "-f", joiner)
			for _, r := range allocations(t) {
				if strings.HasPrefix(r.id, mustDocker(t, "inspect", "-f", "{{.Id}}", first)[:12]) {
					return
				}
			}
			t.Fatal("removing the joiner freed the joined container's range")
		})
	}
}

// The container's /proc/uptime counts from its own start, in a new
// container and through docker exec, while the host's is larger.
func TestUptime(t *testing.T) {
	uptime := func(s string) float64 {
		t.Helper()
		var up float64
		if _, err := fmt.Sscan(s, &up); err != nil {
			t.Fatalf("parse uptime %q: %v", s, err)
		}
		return up
	}
	data, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n := dockerRun(t, nil, "sleep", "600")
	out := mustDocker(t, "exec", n, "cat", "/proc/uptime")
	// The offset is taken in whole seconds, so the container's clock may
	// be up to a second ahead of the time since we asked for it.
	limit := time.Since(start).Seconds() + 1
	if up := uptime(out); up > limit {
		t.Fatalf("uptime in the container %.2f, want at most %.2f (host %s)", up, limit, strings.TrimSpace(string(data)))
	}
	if host := uptime(string(data)); host <= limit {
		t.Logf("host up only %.2fs: cannot tell the container's uptime from the host's", host)
	}
	start = time.Now()
	out = mustDocker(t, "run", "--rm", "--runtime", "moat", image, "cat", "/proc/uptime")
	if up, limit := uptime(out), time.Since(start).Seconds()+1; up > limit {
		t.Fatalf("uptime in a fresh container %.2f, want at most %.2f", up, limit)
	}
}

// Joining the namespaces of a container moat does not run (here one under
// runc) is refused up front, with moat's message, not by some accident
// further on.
func TestJoinNonMoatContainer(t *testing.T) {
	n := name(t)
	mustDocker(t, "run", "-d", "--runtime", "runc", "--ipc=shareable", "--name", n, image, "sleep", "600")
	before := takeSnapshot(t, dockerRoot)
	for _, c := range []struct{ flag, ns string }{
		{"--network=container:", "network"},
		{"--pid=container:", "pid"},
		{"--ipc=container:", "ipc"},
	} {
		t.Run(c.flag, func(t *testing.T) {
			r := docker("run", "--rm", "--runtime", "moat", "--name", name(t), c.flag+n, image, "true")
			want := "OCI runtime create failed: error in the container spec: can't join the " + c.ns + " namespace /proc/"
			if r.code == 0 || !strings.Contains(r.stderr, want) ||
				!strings.Contains(r.stderr, "it belongs to a process that is not in a moat container; moat containers can only join the namespaces of other moat containers") {
				t.Fatalf("want %q, got %s", want, r)
			}
		})
	}
	checkUnchanged(t, dockerRoot, before)
}

// Namespace paths in a bundle: each must be a namespace of its type, even
// where moat replaces the namespace; namespaces that the host's user
// namespace owns can be joined only when they are network namespaces made
// for the container (pinned by a file, as CNI does).
func TestBundleNamespacePaths(t *testing.T) {
	root := moatRoot(t)
	netns := "moat-it-" + randomID()
	must(t, "ip", "netns", "add", netns)
	t.Cleanup(func() { run("", "ip", "netns", "delete", netns) })
	pinned := func(kind string) string {
		f := filepath.Join(t.TempDir(), kind)
		must(t, "touch", f)
		must(t, "unshare", "--"+kind+"="+f, "true")
		t.Cleanup(func() { run("", "umount", "-l", f) })
		return f
	}
	ipc, uts := pinned("ipc"), pinned("uts")
	for _, c := range []struct {
		name   string
		nsType specs.LinuxNamespaceType
		path   string
		want   string
	}{
		{"user namespace path of another type", "user", "/run/netns/" + netns, "error in the container spec: user namespace path /run/netns/" + netns + " is a network namespace"},
		{"cgroup namespace path that is no namespace", "cgroup", "/etc/hostname", "error in the container spec: cgroup namespace path: /etc/hostname is not a namespace"},
		{"host-owned ipc namespace", "ipc", ipc, "error in the container spec: can't join the ipc namespace " + ipc + ": the host's user namespace owns it, so the container's root could not use it"},
		{"host-owned uts namespace", "uts", uts, "error in the container spec: can't join the uts namespace " + uts + ": the host's user namespace owns it"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := bundle(t, "true")
			editSpec(t, dir, func(s *specs.Spec) { joinNamespace(s, c.nsType, c.path) })
			runRefused(t, root, dir, c.want)
		})
	}
	t.Run("CNI-made network namespace", func(t *testing.T) {
		dir := bundle(t, "cat", "/proc/self/uid_map")
		editSpec(t, dir, func(s *specs.Spec) { joinNamespace(s, specs.NetworkNamespace, "/run/netns/"+netns) })
		r := run("", moatBin, "--root", root, "run", "--bundle", dir, "it-"+randomID())
		if r.err != nil || !strings.HasPrefix(strings.TrimSpace(r.stdout), "0") {
			t.Fatalf("run in a pinned network namespace: %s", r)
		}
	})
}

// joinNamespace makes the spec join the namespace of type typ at path, in
// place of any namespace of that type it had.
func joinNamespace(s *specs.Spec, typ specs.LinuxNamespaceType, path string) {
	s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == typ })
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: typ, Path: path})
}
