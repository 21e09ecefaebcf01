package idmap

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/moatrt/moat/internal/fstest"
)

// inNetnsCheck runs InNetns on path with a function that fails unless its
// thread is in that namespace.
func inNetnsCheck(path string) error {
	want, err := os.Readlink(path)
	if err != nil {
		return err
	}
	return InNetns(path, func() error {
		got, err := os.Readlink("/proc/thread-self/ns/net")
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("function ran in %s, want %s", got, want)
		}
		return nil
	})
}

// InNetns runs the function in the namespace, passes its error on, and
// leaves every thread in its own namespace, the main thread included.
func TestInNetns(t *testing.T) {
	fstest.RequiresRoot(t)
	netns := "/proc/" + strconv.Itoa(fstest.NamespacedProcess(t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET})) + "/ns/net"
	t.Run("main thread", func(t *testing.T) {
		fstest.OnMain(t, "in-netns", netns)
	})
	t.Run("repeated", func(t *testing.T) {
		before, err := fstest.ThreadStates()
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 50; i++ {
			if err := inNetnsCheck(netns); err != nil {
				t.Fatal(err)
			}
		}
		boom := errors.New("boom")
		if err := InNetns(netns, func() error { return boom }); !errors.Is(err, boom) {
			t.Errorf("InNetns returned %v, want the function's error", err)
		}
		if err := InNetns("/proc/self/ns/nope", func() error { return nil }); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("InNetns of a missing namespace: %v", err)
		}
		fstest.CheckThreads(t, before)
	})
}
