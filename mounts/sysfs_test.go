package mounts

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/internal/fstest"
)

// A staged sysfs shows the network devices of the namespace it was made
// for, not the host's, is read-only, and goes with TeardownStaged.
func TestStageSysfs(t *testing.T) {
	fstest.RequiresRoot(t)
	pid := strconv.Itoa(fstest.NamespacedProcess(t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}))
	if out, err := exec.Command("nsenter", "-t", pid, "-n", "ip", "link", "add", "moatbr0", "type", "bridge").CombinedOutput(); err != nil {
		t.Fatalf("make a device in the namespace: %v: %s", err, out)
	}
	host, err := os.ReadDir("/sys/class/net")
	if err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(fstest.TestDir(t), "staged")
	t.Cleanup(func() { _ = TeardownStaged(dir) })
	target := filepath.Join(dir, "sysfs")
	if err := StageSysfs("/proc/"+pid+"/ns/net", target); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(target, "class/net/moatbr0")); err != nil {
		t.Errorf("the namespace's device is missing: %v", err)
	}
	for _, d := range host {
		if d.Name() == "lo" {
			continue
		}
		if _, err := os.Lstat(filepath.Join(target, "class/net", d.Name())); err == nil {
			t.Errorf("host device %s shows in the namespace's sysfs", d.Name())
		}
	}
	err = os.WriteFile(filepath.Join(target, "class/net/moatbr0/mtu"), []byte("1400"), 0)
	if !errors.Is(err, unix.EROFS) {
		t.Errorf("write to the staged sysfs: %v, want EROFS", err)
	}
	if err := TeardownStaged(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("staging dir left: %v", err)
	}

	// A namespace that is not there leaves nothing either.
	if err := StageSysfs("/proc/self/ns/nope", target); err == nil {
		t.Error("staged the sysfs of a missing namespace")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed stage left %s: %v", dir, err)
	}
}

// Staging a sysfs leaves every thread in the process's own network
// namespace, the main thread included: moat compares a container's
// namespaces with /proc/self/ns, the main thread's, to refuse the host's.
func TestStageSysfsThreads(t *testing.T) {
	fstest.RequiresRoot(t)
	netns := "/proc/" + strconv.Itoa(fstest.NamespacedProcess(t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET})) + "/ns/net"
	dir := filepath.Join(fstest.TestDir(t), "staged")
	t.Cleanup(func() { _ = TeardownStaged(dir) })

	t.Run("main thread", func(t *testing.T) {
		// Run first thing in a fresh process, staging runs on the main
		// thread, as in the moat command.
		fstest.OnMain(t, "stage-sysfs", netns, filepath.Join(dir, "main"))
	})
	t.Run("repeated", func(t *testing.T) {
		before, err := fstest.ThreadStates()
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 50; i++ {
			if err := StageSysfs(netns, filepath.Join(dir, strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
		fstest.CheckThreads(t, before)
	})
}
