package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// setNamespaces points the bundle's namespaces of the given types at paths.
func setNamespaces(t *testing.T, dir string, paths map[string]string) {
	t.Helper()
	filter := ".linux.namespaces |= map("
	for typ, path := range paths {
		filter += fmt.Sprintf(`if .type == %q then .path = %q else . end | `, typ, path)
	}
	filter += ".)"
	cfg := filepath.Join(dir, "config.json")
	must(t, "sh", "-c", fmt.Sprintf(`jq '%s' %s > %s.new && mv %s.new %s`, filter, cfg, cfg, cfg, cfg))
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
	var pid int
	if _, err := fmt.Sscan(must(t, "sh", "-c", fmt.Sprintf("%s --root %s state %s | jq .pid", moatBin, root, sid)), &pid); err != nil {
		t.Fatal(err)
	}
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
