//go:build integration

package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// moat killed with SIGKILL at any point of create never leaves two live
// containers sharing a range, and delete --force of what it left cleans up
// everything: state, mounts, ranges, processes and cgroups.
func TestKilledDuringCreate(t *testing.T) {
	root := moatRoot(t)
	dir := bundle(t, "sleep", "600")
	prefix := "crash-" + randomID()
	var ids []string
	t.Cleanup(func() {
		for _, id := range ids {
			run("", moatBin, "--root", root, "delete", "--force", id)
		}
	})
	// Spread the kills over the whole create, from before the allocation
	// to after libcontainer has started init.
	for i, delay := range []time.Duration{0, 1, 2, 4, 6, 8, 10, 15, 20, 25, 30, 40, 50, 70, 100} {
		id := fmt.Sprintf("%s-%d", prefix, i)
		ids = append(ids, id)
		cmd := exec.Command(moatBin, "--root", root, "create", "--bundle", dir, id)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}

	// A range is never held twice, and a new container gets one of its own.
	probe := prefix + "-probe"
	ids = append(ids, probe)
	must(t, moatBin, "--root", root, "create", "--bundle", dir, probe)
	held := map[uint32]string{}
	for _, r := range allocations(t) {
		if other, ok := held[r.uid]; ok && !r.shared {
			t.Errorf("range %d held by %s and %s/%s", r.uid, other, r.root, r.id)
		}
		held[r.uid] = r.root + "/" + r.id
	}

	for _, id := range ids {
		if r := run("", moatBin, "--root", root, "delete", "--force", id); r.err != nil {
			t.Errorf("delete --force %s: %s", id, r)
		}
	}
	checkNothingLeft(t, root, prefix)
	if pids := processesMentioning(root); len(pids) > 0 {
		t.Errorf("processes of the killed creates still run: %v", pids)
	}
	checkNoCgroups(t, prefix+"-*")
}

// processesMentioning lists the processes whose environment or command line
// names s: a container init waiting for start carries its state dir there.
func processesMentioning(s string) []string {
	var pids []string
	es, _ := os.ReadDir("/proc")
	for _, e := range es {
		for _, f := range []string{"environ", "cmdline"} {
			data, err := os.ReadFile(filepath.Join("/proc", e.Name(), f))
			if err == nil && strings.Contains(string(data), s) {
				pids = append(pids, e.Name())
				break
			}
		}
	}
	return pids
}

// checkNothingLeft fails the test if moat holds a range for root, a mount
// whose path contains name, or state under root.
func checkNothingLeft(t *testing.T, root, name string) {
	t.Helper()
	for _, r := range allocations(t) {
		if r.root == root {
			t.Errorf("range %d still held by %s", r.uid, r.id)
		}
	}
	for _, m := range moatMounts(t) {
		if strings.Contains(m, name) {
			t.Errorf("mount left: %s", m)
		}
	}
	if es, _ := os.ReadDir(root); len(es) > 0 {
		t.Errorf("state left in %s: %v", root, es)
	}
}

// checkNoCgroups fails the test if a cgroup whose name matches the glob
// pattern is left, at the top of a hierarchy or one level down.
func checkNoCgroups(t *testing.T, pattern string) {
	t.Helper()
	for _, g := range []string{"/sys/fs/cgroup/*/", "/sys/fs/cgroup/*/*/"} {
		if cgs, _ := filepath.Glob(g + pattern); len(cgs) > 0 {
			t.Errorf("cgroups left: %v", cgs)
		}
	}
}
