//go:build integration

package test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// setNamespaces points the bundle's namespaces of the given types at paths.
func setNamespaces(t *testing.T, dir string, paths map[string]string) {
	t.Helper()
	editSpec(t, dir, func(s *specs.Spec) {
		for i, ns := range s.Linux.Namespaces {
			if path, ok := paths[string(ns.Type)]; ok {
				s.Linux.Namespaces[i].Path = path
			}
		}
	})
}

// A pod as containerd's CRI builds one: the CNI plugin makes the network
// namespace in the host's user namespace, the sandbox container joins it,
// and the app container joins the sandbox's ipc and uts namespaces and the
// same network namespace. The app runs in the sandbox's user namespace and
// range, and both see the pod's network devices in /sys, not the host's.
func TestPodNamespaces(t *testing.T) {
	root := moatRoot(t)
	// Pinned by a file, as CNI plugins pin a pod's network namespace.
	netns := "moat-it-" + randomID()
	must(t, "ip", "netns", "add", netns)
	t.Cleanup(func() { run("", "ip", "netns", "delete", netns) })
	netPath := "/run/netns/" + netns
	must(t, "nsenter", "--net="+netPath, "ip", "link", "add", "moatpod0", "type", "bridge")

	sandbox := bundle(t, "sleep", "600")
	setNamespaces(t, sandbox, map[string]string{"network": netPath})
	sid := "pod-" + randomID()
	must(t, moatBin, "--root", root, "run", "-d", "--bundle", sandbox, sid)
	var state specs.State
	if err := json.Unmarshal([]byte(must(t, moatBin, "--root", root, "state", sid)), &state); err != nil {
		t.Fatal(err)
	}
	pid := state.Pid
	proc := func(f string) string { return fmt.Sprintf("/proc/%d/%s", pid, f) }
	userns, err := os.Readlink(proc("ns/user"))
	if err != nil {
		t.Fatal(err)
	}

	app := bundle(t, "sh", "-c", "cat /proc/self/uid_map; readlink /proc/self/ns/user; ls /sys/class/net")
	setNamespaces(t, app, map[string]string{"network": netPath, "ipc": proc("ns/ipc"), "uts": proc("ns/uts")})
	out := must(t, moatBin, "--root", root, "run", "--bundle", app, "app-"+randomID())
	lines := strings.Split(out, "\n")
	want, err := os.ReadFile(proc("uid_map"))
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) < 3 || strings.Join(strings.Fields(lines[0]), " ") != strings.Join(strings.Fields(string(want)), " ") || lines[1] != userns {
		t.Fatalf("app maps %q in %q, want the sandbox's %q in %s", lines[0], lines[1:2], want, userns)
	}
	if devs := strings.Join(lines[2:], " "); devs != "lo moatpod0" {
		t.Fatalf("/sys/class/net in the app shows %q, want the pod's lo moatpod0", devs)
	}

	must(t, moatBin, "--root", root, "delete", "--force", sid)
	checkNothingLeft(t, root, sid)
}

// netnsAdd makes a named network namespace as podman and `ip netns` do
// (/run/netns/NAME, owned by the host's user namespace) and deletes it when
// the test ends.
func netnsAdd(t *testing.T) string {
	t.Helper()
	n := "moat-it-" + randomID()
	must(t, "ip", "netns", "add", n)
	t.Cleanup(func() { run("", "ip", "netns", "delete", n) })
	return n
}

// A bundle in a network namespace made with `ip netns add`, as podman makes
// one, with podman's default sysctl: moat writes the sysctl into that
// namespace for the container (its root may not), in the container's gids,
// and stays in its own namespace while it stages the sysfs, so the pod's
// namespace is not taken for the host's.
func TestNamedNetnsSysctl(t *testing.T) {
	root := moatRoot(t)
	netns := netnsAdd(t)
	dir := bundle(t, "sh", "-c", "cat /proc/self/gid_map /proc/sys/net/ipv4/ping_group_range; ls /sys/class/net")
	setNamespaces(t, dir, map[string]string{"network": "/run/netns/" + netns})
	editSpec(t, dir, func(s *specs.Spec) {
		s.Linux.Sysctl = map[string]string{"net.ipv4.ping_group_range": "0 0"}
	})
	id := "it-" + randomID()
	r := run("", moatBin, "--root", root, "run", "--bundle", dir, id)
	if r.err != nil {
		t.Fatalf("moat run: %s", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("unexpected output: %s", r)
	}
	gids := mapStart(t, strings.Join(strings.Fields(lines[0]), " "))
	if got := strings.Join(strings.Fields(lines[1]), " "); got != "0 0" {
		t.Errorf("ping_group_range inside: %q, want 0 0", got)
	}
	if lines[2] != "lo" {
		t.Errorf("/sys/class/net inside shows %q, want the namespace's lo", lines[2])
	}
	host := strings.Join(strings.Fields(must(t, "ip", "netns", "exec", netns, "cat", "/proc/sys/net/ipv4/ping_group_range")), " ")
	if want := fmt.Sprintf("%d %d", gids, gids); host != want {
		t.Errorf("ping_group_range seen from the host: %q, want %q", host, want)
	}
	checkNothingLeft(t, root, id)
}
