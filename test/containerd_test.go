//go:build integration

package test

import (
	"strings"
	"testing"
)

const ctrNamespace = "moat-it"

// containerdImage imports the test image into containerd once per test.
func containerdImage(t *testing.T) string {
	t.Helper()
	ref := "docker.io/" + image
	if r := run("", "ctr", "-n", ctrNamespace, "images", "check", "name=="+ref); strings.Contains(r.stdout, ref) {
		return ref
	}
	must(t, "sh", "-c", dockerBin+" save "+image+" | ctr -n "+ctrNamespace+" images import -")
	return ref
}

// containerd's runc v2 shim drives moat exactly like runc, over the
// overlayfs snapshotter: the same mapping and ownership as under docker.
func TestContainerd(t *testing.T) {
	ref := containerdImage(t)
	id := "moat-it-" + randomID()
	t.Cleanup(func() {
		run("", "ctr", "-n", ctrNamespace, "task", "kill", "-s", "KILL", id)
		run("", "ctr", "-n", ctrNamespace, "task", "delete", "--force", id)
		run("", "ctr", "-n", ctrNamespace, "containers", "delete", id)
	})
	out := must(t, "ctr", "-n", ctrNamespace, "run", "--rm", "--runc-binary", moatBin, ref, id,
		"sh", "-c", "cat /proc/self/uid_map; stat -c %u:%g / /home/user; touch /x && stat -c %u /x")
	lines := strings.Split(out, "\n")
	if len(lines) != 4 {
		t.Fatalf("unexpected output %q", out)
	}
	if f := strings.Fields(lines[0]); len(f) != 3 || f[0] != "0" || f[2] != "65536" || f[1] == "0" {
		t.Fatalf("uid_map %q", lines[0])
	}
	if lines[1] != "0:0" || lines[2] != "1000:1000" || lines[3] != "0" {
		t.Fatalf("ownership inside: %q", lines[1:])
	}

	// exec into a running task sees the same mapping.
	id2 := "moat-it-" + randomID()
	t.Cleanup(func() {
		run("", "ctr", "-n", ctrNamespace, "task", "kill", "-s", "KILL", id2)
		run("", "ctr", "-n", ctrNamespace, "task", "delete", "--force", id2)
		run("", "ctr", "-n", ctrNamespace, "containers", "delete", id2)
	})
	must(t, "ctr", "-n", ctrNamespace, "run", "-d", "--runc-binary", moatBin, ref, id2, "sleep", "600")
	m := must(t, "ctr", "-n", ctrNamespace, "task", "exec", "--exec-id", "e1", id2, "cat", "/proc/self/uid_map")
	if f := strings.Fields(m); len(f) != 3 || f[0] != "0" || f[1] == "0" {
		t.Fatalf("exec uid_map %q", m)
	}
}

// Outside docker and CRI nothing tells moat the image, so an engine socket
// is refused even for an image that docker.socket_images would allow.
func TestContainerdSocketUnknownImage(t *testing.T) {
	ref := containerdImage(t)
	id := "moat-it-" + randomID()
	t.Cleanup(func() {
		run("", "ctr", "-n", ctrNamespace, "task", "delete", "--force", id)
		run("", "ctr", "-n", ctrNamespace, "containers", "delete", id)
	})
	before := takeSnapshot(t, "/run/containerd/runc/"+ctrNamespace)
	r := run("", "ctr", "-n", ctrNamespace, "run", "--rm", "--runc-binary", moatBin,
		"--mount", "type=bind,src=/var/run/docker.sock,dst=/var/run/docker.sock,options=rbind:rw", ref, id, "true")
	want := "can't mount /run/docker.sock because it's configured as a restricted host mount (the container's image could not be established)"
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Fatalf("want %q, got %s", want, r)
	}
	checkUnchanged(t, "/run/containerd/runc/"+ctrNamespace, before)
}
