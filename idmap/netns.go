package idmap

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// InNetns runs fn on a thread that is in the network namespace at path
// (what it opens under /proc/sys/net, the sysfs it mounts, the sockets it
// makes belong to that namespace), and puts the thread back in its own
// network namespace before Go may run anything else on it. That thread can
// be the process's main thread, whose namespaces are the ones /proc/self/ns
// shows (libcontainer compares a container's namespaces with them) and
// which Go never ends: left in another namespace, it would make moat take
// that namespace for the host's.
func InNetns(path string, fn func() error) error {
	ns, err := os.Open(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restored, err := switchNetns(ns, fn)
		if restored {
			runtime.UnlockOSThread()
		}
		// Otherwise the thread stays locked and Go ends it with this
		// goroutine.
		errc <- err
	}()
	return <-errc
}

// switchNetns runs fn in the network namespace ns on the calling, locked
// thread and reports whether the thread is back in its own namespace. Only
// the network namespace changes: nothing (no unshare of the fs context)
// that could not be undone, so the thread can be used again.
func switchNetns(ns *os.File, fn func() error) (restored bool, err error) {
	own, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return true, fmt.Errorf("open own network namespace: %w", err)
	}
	defer own.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		return true, fmt.Errorf("setns %s: %w", ns.Name(), err)
	}
	ferr := fn()
	if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
		return false, errors.Join(ferr, fmt.Errorf("return to own network namespace: %w", err))
	}
	return true, ferr
}
