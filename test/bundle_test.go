//go:build integration

package test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// moat run on a plain bundle: the directory rootfs is ID-mapped too.
func TestBundleRun(t *testing.T) {
	root := moatRoot(t)
	dir := bundle(t, "sh", "-c", "cat /proc/self/uid_map; stat -c %u:%g / /home/user; echo made > /tmp/made")
	r := run("", moatBin, "--root", root, "run", "--bundle", dir, "it-"+randomID())
	if r.err != nil {
		t.Fatalf("moat run: %s", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("unexpected output: %s", r)
	}
	if f := strings.Fields(lines[0]); len(f) != 3 || f[0] != "0" || f[2] != "65536" {
		t.Fatalf("uid_map %q", lines[0])
	}
	if lines[1] != "0:0" || lines[2] != "1000:1000" {
		t.Fatalf("rootfs ownership inside: %q", lines[1:])
	}
	if got := statOwner(t, filepath.Join(dir, "rootfs/tmp/made")); got != "0:0" {
		t.Fatalf("file written by container root owned by %s on host", got)
	}
	if snap := takeSnapshot(t, root); snap.states != "" || strings.Contains(snap.ranges, root) {
		t.Fatalf("run left state behind: %+v", snap)
	}
}

// create, state, start, kill, delete by hand, as the shim does.
func TestBundleLifecycle(t *testing.T) {
	root := moatRoot(t)
	dir := bundle(t, "sleep", "600")
	id := "it-" + randomID()
	pidFile := filepath.Join(t.TempDir(), "pid")
	must(t, moatBin, "--root", root, "create", "--bundle", dir, "--pid-file", pidFile, id)
	if st := must(t, moatBin, "--root", root, "state", id); !strings.Contains(st, `"status": "created"`) {
		t.Fatalf("state after create: %s", st)
	}
	if data, err := os.ReadFile(pidFile); err != nil || len(data) == 0 {
		t.Fatalf("pid file: %q %v", data, err)
	}
	must(t, moatBin, "--root", root, "start", id)
	if st := must(t, moatBin, "--root", root, "state", id); !strings.Contains(st, `"status": "running"`) {
		t.Fatalf("state after start: %s", st)
	}
	if ps := must(t, moatBin, "--root", root, "ps", "--format", "json", id); !strings.HasPrefix(ps, "[") || ps == "[]" {
		t.Fatalf("ps: %s", ps)
	}
	if l := must(t, moatBin, "--root", root, "list"); !strings.Contains(l, id) {
		t.Fatalf("list: %s", l)
	}
	if out := must(t, moatBin, "--root", root, "exec", id, "cat", "/proc/self/uid_map"); !strings.HasPrefix(strings.TrimSpace(out), "0") {
		t.Fatalf("exec uid_map: %q", out)
	}
	must(t, moatBin, "--root", root, "kill", id, "KILL")
	waitStopped(t, moatBin, root, id)
	must(t, moatBin, "--root", root, "delete", id)
	if snap := takeSnapshot(t, root); snap.states != "" || strings.Contains(snap.ranges, root) || snap.mounts != "" && strings.Contains(snap.mounts, id) {
		t.Fatalf("delete left state behind: %+v", snap)
	}
}

// waitStopped waits for container id of the runtime bin (moat or runc) to
// stop.
func waitStopped(t *testing.T, bin, root, id string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		st := must(t, bin, "--root", root, "state", id)
		if strings.Contains(st, `"status": "stopped"`) {
			return
		}
		run("", "sleep", "0.1")
	}
	t.Fatalf("%s did not stop", id)
}

// Bad input fails with a clear message and leaves nothing behind.
func TestBadInput(t *testing.T) {
	root := moatRoot(t)
	good := bundle(t, "sleep", "600")
	write := func(content string) string {
		dir := t.TempDir()
		if err := os.Symlink(filepath.Join(good, "rootfs"), filepath.Join(dir, "rootfs")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"malformed config", []string{"create", "--bundle", write("{\n\"ociVersion\": \"1.0.2\",\n\"process\": {\n}}}"), "bad-1"}, "line 4"},
		{"no process", []string{"create", "--bundle", write(`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"linux":{}}`), "bad-2"}, "process is required"},
		{"no root", []string{"create", "--bundle", write(`{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/"},"linux":{}}`), "bad-3"}, "root.path is required"},
		{"empty args", []string{"create", "--bundle", write(`{"ociVersion":"1.0.2","process":{"args":[],"cwd":"/"},"root":{"path":"rootfs"},"linux":{}}`), "bad-4"}, "process.args must not be empty"},
		{"missing bundle", []string{"create", "--bundle", "/nonexistent/bundle", "bad-5"}, "bundle /nonexistent/bundle does not exist"},
		{"no config.json", []string{"create", "--bundle", t.TempDir(), "bad-6"}, "has no config.json"},
		{"missing rootfs", []string{"create", "--bundle", write(`{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/"},"root":{"path":"/nonexistent/rootfs"},"linux":{"namespaces":[{"type":"pid"},{"type":"network"},{"type":"ipc"},{"type":"uts"},{"type":"mount"}]}}`), "bad-7"}, "/nonexistent/rootfs"},
		{"host namespaces", []string{"create", "--bundle", write(`{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"},"linux":{}}`), "bad-8"}, "can't share namespaces [pid network ipc uts mount] with the host"},
		{"bad id", []string{"create", "--bundle", good, "../escape"}, "invalid container id"},
		{"unknown signal", []string{"kill", "nosuch", "SIGNOPE"}, `unknown signal "SIGNOPE"`},
	}
	before := takeSnapshot(t, root)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run("", moatBin, append([]string{"--root", root}, c.args...)...)
			if r.code == 0 {
				t.Fatalf("succeeded: %s", r)
			}
			if !strings.Contains(r.stderr, c.want) {
				t.Fatalf("error does not say %q: %s", c.want, r)
			}
			checkUnchanged(t, root, before)
		})
	}

	// A duplicate ID fails and leaves the first container untouched.
	t.Run("duplicate id", func(t *testing.T) {
		must(t, moatBin, "--root", root, "create", "--bundle", good, "dup")
		held := takeSnapshot(t, root)
		r := run("", moatBin, "--root", root, "create", "--bundle", good, "dup")
		if r.code == 0 || !strings.Contains(r.stderr, "container dup already exists") {
			t.Fatalf("duplicate create: %s", r)
		}
		if after := takeSnapshot(t, root); after != held {
			t.Fatalf("duplicate create changed state:\nbefore %+v\nafter  %+v", held, after)
		}
		if st := must(t, moatBin, "--root", root, "state", "dup"); !strings.Contains(st, `"status": "created"`) {
			t.Fatalf("first container after duplicate create: %s", st)
		}
		must(t, moatBin, "--root", root, "delete", "--force", "dup")
		checkUnchanged(t, root, before)
	})
}

// Errors reach docker users through the shim's log file, in JSON.
func TestLogFormat(t *testing.T) {
	root := moatRoot(t)
	log := filepath.Join(t.TempDir(), "log.json")
	r := run("", moatBin, "--root", root, "--log", log, "--log-format", "json", "create", "--bundle", "/nonexistent", "x")
	if r.code == 0 {
		t.Fatalf("succeeded: %s", r)
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"level":"error"`) || !strings.Contains(string(data), `"msg":"bundle /nonexistent does not exist"`) {
		t.Fatalf("log file: %s", data)
	}
}

// --version prints the lines dockerd parses.
func TestVersion(t *testing.T) {
	out := must(t, moatBin, "--version")
	lines := strings.Split(out, "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "moat version ") || !strings.HasPrefix(lines[1], "commit: ") || !strings.HasPrefix(lines[2], "spec: ") {
		t.Fatalf("--version: %q", out)
	}
}

// A container's staging dir is searchable by its own root and no other user,
// so that libcontainer's init mounts the staged sources by path instead of
// asking the runtime process for each one (a round trip per mount, seen as
// procMountPlease in the debug log); and the bind still shows the file.
func TestStagingDirOwner(t *testing.T) {
	root := moatRoot(t)
	src := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(src, []byte("staged\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := bundle(t, "cat", "/etc/hosts")
	editSpec(t, dir, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: src, Options: []string{"rbind", "ro"}})
	})
	id := "it-" + randomID()
	must(t, moatBin, "--root", root, "create", "--bundle", dir, id)
	staged, _ := filepath.Glob(filepath.Join(moatMountDir, "*", id+"@binds"))
	if len(staged) != 1 {
		t.Fatalf("staging dirs of %s: %v", id, staged)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(staged[0], &st); err != nil {
		t.Fatal(err)
	}
	var rng *idRange
	for _, r := range allocations(t) {
		if r.root == root && r.id == id {
			rng = &r
		}
	}
	if rng == nil {
		t.Fatalf("%s holds no range", id)
	}
	// Searchable by the container's root through its group; writable by
	// host root only.
	if st.Uid != 0 || st.Gid != rng.gid || st.Mode&0o777 != 0o710 {
		t.Errorf("staging dir %s: uid %d gid %d mode %o, want 0 %d 710", staged[0], st.Uid, st.Gid, st.Mode&0o777, rng.gid)
	}
	must(t, moatBin, "--root", root, "delete", id)

	r := run("", moatBin, "--root", root, "--debug", "run", "--bundle", dir, "it-"+randomID())
	if r.err != nil || !strings.Contains(r.stdout, "staged") {
		t.Fatalf("run with the bind: %s", r)
	}
	if strings.Contains(r.stderr, "procMountPlease") {
		t.Errorf("libcontainer's init asked for a mount source it could have reached:\n%s", r.stderr)
	}
}
