// Package idmap wraps the kernel's ID-mapping primitives: a user namespace
// that carries a mapping, and ID-mapped mounts made with open_tree,
// mount_setattr(MOUNT_ATTR_IDMAP) and move_mount, including an overlay built
// from ID-mapped layers. It knows nothing of containers.
package idmap

/*
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <errno.h>

// spawn_userns_holder forks a child in a new user namespace that only waits
// to be killed. Only async-signal-safe calls run in the child, which makes
// the fork safe in a multithreaded Go process and far cheaper than exec.
static int spawn_userns_holder(void) {
	long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
	if (pid == 0) {
		for (;;)
			pause();
	}
	return (int)pid;
}

static void reap(int pid) {
	kill(pid, SIGKILL);
	while (waitpid(pid, 0, 0) < 0 && errno == EINTR)
		;
}
*/
import "C"

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Mapping is one line of a uid_map or gid_map.
type Mapping struct {
	ContainerID, HostID, Size uint32
}

func formatMappings(ms []Mapping) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "%d %d %d\n", m.ContainerID, m.HostID, m.Size)
	}
	return b.String()
}

// NewUserns returns an open user namespace with exactly these mappings, for
// use as MOUNT_ATTR_IDMAP's userns_fd. The process that made it is gone by
// the time NewUserns returns; the fd keeps the namespace alive.
func NewUserns(uids, gids []Mapping) (*os.File, error) {
	pid, err := C.spawn_userns_holder()
	if pid < 0 {
		return nil, fmt.Errorf("clone user namespace: %w", err)
	}
	defer C.reap(pid)
	proc := "/proc/" + strconv.Itoa(int(pid))
	if err := os.WriteFile(proc+"/uid_map", []byte(formatMappings(uids)), 0); err != nil {
		return nil, fmt.Errorf("write uid_map: %w", err)
	}
	if err := os.WriteFile(proc+"/gid_map", []byte(formatMappings(gids)), 0); err != nil {
		return nil, fmt.Errorf("write gid_map: %w", err)
	}
	f, err := os.Open(proc + "/ns/user")
	if err != nil {
		return nil, fmt.Errorf("open user namespace: %w", err)
	}
	return f, nil
}
