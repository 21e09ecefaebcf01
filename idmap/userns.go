// Package idmap wraps the kernel's ID-mapping primitives: a user namespace
// that carries a mapping, ID-mapped mounts made with open_tree,
// mount_setattr(MOUNT_ATTR_IDMAP) and move_mount, and an overlay built from
// ID-mapped layers. It knows nothing of containers.
package idmap

/*
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#define HOLDER_STACK_SIZE (64 * 1024)

// holder is the child: it waits to be killed, and dies with the thread that
// made it. It shares the parent's memory (CLONE_VM), so it only makes plain
// system calls: no locks, no allocation, no errno, no cancellation points.
static int holder(void *parent) {
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (getppid() != (pid_t)(long)parent)
		syscall(SYS_exit, 1);
	for (;;)
		syscall(SYS_ppoll, NULL, 0, NULL, NULL, 0);
	return 0;
}

// moat_userns_holder starts a child in a new user namespace and returns
// its pid, or -errno. *pidfd gets a pidfd of the child and *stack its stack,
// to be freed once the child is reaped.
//
// The child shares the parent's memory rather than copying it (fork), which
// costs milliseconds in a Go process. All signals are blocked across the
// clone, so no Go signal handler ever runs in the child.
static int moat_userns_holder(int *pidfd, void **stack) {
	sigset_t all, old;
	char *s;
	int pid, err = 0;

	s = malloc(HOLDER_STACK_SIZE);
	if (s == NULL)
		return -ENOMEM;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid = clone(holder, s + HOLDER_STACK_SIZE, CLONE_NEWUSER | CLONE_VM | CLONE_PIDFD | SIGCHLD,
		    (void *)(long)getpid(), pidfd);
	if (pid < 0)
		err = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (pid < 0) {
		free(s);
		return -err;
	}
	*stack = s;
	return pid;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Mapping is one line of a uid_map or gid_map: Size IDs from ContainerID on
// inside the namespace are HostID on outside.
type Mapping struct {
	ContainerID, HostID, Size uint32
}

func formatMappings(ms []Mapping) (string, error) {
	if len(ms) == 0 {
		return "", errors.New("no mapping")
	}
	var b strings.Builder
	for _, m := range ms {
		if m.Size == 0 {
			return "", fmt.Errorf("mapping %d:%d has size 0", m.ContainerID, m.HostID)
		}
		fmt.Fprintf(&b, "%d %d %d\n", m.ContainerID, m.HostID, m.Size)
	}
	return b.String(), nil
}

// Userns is the user namespace of one container's ID-mapped mounts: made
// on first use and then shared by all of them (the rootfs layers, every bind
// source), since making one costs a process.
type Userns struct {
	UIDs, GIDs []Mapping
	f          *os.File
}

// File returns the namespace, making it on the first call.
func (u *Userns) File() (*os.File, error) {
	if u.f == nil {
		f, err := NewUserns(u.UIDs, u.GIDs)
		if err != nil {
			return nil, err
		}
		u.f = f
	}
	return u.f, nil
}

// Close lets the namespace go once no mount is being made with it (the
// mounts keep it alive). A nil Userns has nothing to close.
func (u *Userns) Close() {
	if u != nil && u.f != nil {
		u.f.Close()
		u.f = nil
	}
}

// NewUserns returns an open user namespace (/proc/<pid>/ns/user) with
// exactly these mappings, for use as MOUNT_ATTR_IDMAP's userns_fd. The
// process that made it is gone by the time NewUserns returns; the file keeps
// the namespace alive and the caller closes it.
func NewUserns(uids, gids []Mapping) (*os.File, error) {
	uidMap, err := formatMappings(uids)
	if err != nil {
		return nil, fmt.Errorf("uid map: %w", err)
	}
	gidMap, err := formatMappings(gids)
	if err != nil {
		return nil, fmt.Errorf("gid map: %w", err)
	}

	// The child dies with the thread that cloned it: keep this goroutine on
	// that thread until the child is no longer needed.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var (
		pidfd C.int
		stack unsafe.Pointer
	)
	ret := C.moat_userns_holder(&pidfd, &stack)
	if ret < 0 {
		return nil, fmt.Errorf("clone user namespace: %w", syscall.Errno(-ret))
	}
	defer func() {
		reap(int(pidfd))
		C.free(stack)
	}()

	// We hold CAP_SETUID/CAP_SETGID over the parent namespace, so gid_map
	// can be written without first denying setgroups; nothing ever runs in
	// this namespace.
	proc := "/proc/" + strconv.Itoa(int(ret))
	if err := os.WriteFile(proc+"/uid_map", []byte(uidMap), 0); err != nil {
		return nil, fmt.Errorf("write uid_map: %w", err)
	}
	if err := os.WriteFile(proc+"/gid_map", []byte(gidMap), 0); err != nil {
		return nil, fmt.Errorf("write gid_map: %w", err)
	}
	f, err := os.Open(proc + "/ns/user")
	if err != nil {
		return nil, fmt.Errorf("open user namespace: %w", err)
	}
	return f, nil
}

// reap kills and waits for the namespace holder. The pidfd makes both safe
// against the pid being reused.
func reap(pidfd int) {
	_ = unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PIDFD, pidfd, &info, unix.WEXITED, nil)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	unix.Close(pidfd)
}
