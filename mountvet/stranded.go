package mountvet

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/idmap"
)

// A helper killed after it took a call from a listener, and before it
// answered, leaves the caller waiting for an answer that no one will send:
// the kernel does not hand a taken call out again. The caller's wait is
// interruptible, though, and an interrupted call is restarted as a new
// one, which the listener's next reader takes. RestartStranded interrupts
// such callers with ptrace (PTRACE_INTERRUPT, then detach): unlike a
// signal, the container sees nothing of it but the restart.
//
// A call the dead helper had already carried out is carried out again when
// restarted, and vetted again: a tmpfs mounted twice, at worst, never a
// protected mount changed.
//
// This needs the filter to be installed without
// SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, which would make a taken call's
// wait killable only; TestHelperKilledMidCall fails if it ever is.

// isTrapped reports whether nr is one of the calls the filter sends to the
// helper (x86_64 and arm64 have no umount of their own: the C library's
// umount is umount2).
func isTrapped(nr int) bool {
	return nr == unix.SYS_MOUNT || nr == unix.SYS_UMOUNT2
}

// RestartStranded makes every task waiting in a trapped call, in the user
// namespaces of pids or those nested in them, restart the call. Tasks of
// the host's user namespace are never touched, nor the children and
// grandchildren of process workersOf (the helper: its workers mount as
// callers, but are none). It returns the tasks it restarted.
func RestartStranded(pids []int, workersOf int) ([]int, error) {
	host, err := idmap.NamespaceID("/proc/self/ns/user")
	if err != nil {
		return nil, fmt.Errorf("host user namespace: %w", err)
	}
	owners := map[idmap.NSID]bool{}
	for _, pid := range pids {
		ns, err := idmap.NamespaceID("/proc/" + strconv.Itoa(pid) + "/ns/user")
		if err == nil && ns != host {
			owners[ns] = true
		}
	}
	if len(owners) == 0 {
		return nil, nil
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var restarted []int
	var errs []error
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || descends(pid, workersOf) {
			continue
		}
		tasks, err := os.ReadDir("/proc/" + p.Name() + "/task")
		if err != nil {
			continue // gone
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			dir := "/proc/" + p.Name() + "/task/" + t.Name()
			if !waitsInTrapped(dir) || !nestedIn(dir+"/ns/user", owners, host) {
				continue
			}
			if err := interrupt(tid); err != nil {
				errs = append(errs, fmt.Errorf("restart the call of task %d: %w", tid, err))
				continue
			}
			restarted = append(restarted, tid)
		}
	}
	return restarted, errors.Join(errs...)
}

// descends reports whether process pid is a child of ancestor, or a
// grandchild (a worker's child that mounts a new proc or sysfs).
func descends(pid, ancestor int) bool {
	for depth := 0; depth < 2; depth++ {
		pid = parentOf(pid)
		if pid == ancestor {
			return true
		}
		if pid <= 1 {
			return false
		}
	}
	return false
}

// parentOf returns the parent of process pid, or 0 if it is gone.
func parentOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command, in parentheses, may hold spaces: the fields that
	// matter follow its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(string(f[1]))
	return ppid
}

// waitsInTrapped reports whether the task at dir is in a trapped call.
func waitsInTrapped(dir string) bool {
	b, err := os.ReadFile(dir + "/syscall")
	if err != nil {
		return false
	}
	f := bytes.Fields(b)
	if len(f) == 0 {
		return false
	}
	nr, err := strconv.Atoi(string(f[0]))
	return err == nil && isTrapped(nr)
}

// nestedIn reports whether the user namespace at path is one of owners or
// a descendant of one.
func nestedIn(path string, owners map[idmap.NSID]bool, host idmap.NSID) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	// A container nests at most a few user namespaces deep; the kernel
	// allows 32.
	for depth := 0; depth < 33; depth++ {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			break
		}
		ns := idmap.NSID{Dev: st.Dev, Ino: st.Ino}
		if owners[ns] {
			unix.Close(fd)
			return true
		}
		if ns == host {
			break
		}
		parent, err := unix.IoctlRetInt(fd, unix.NS_GET_PARENT)
		unix.Close(fd)
		if err != nil {
			return false
		}
		fd = parent
	}
	unix.Close(fd)
	return false
}

// interrupt stops task tid with ptrace and lets it go: a call waiting for
// the helper's answer is restarted. ptrace requests come from the thread
// that attached, so the goroutine keeps its thread throughout.
func interrupt(tid int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.PtraceSeize(tid); err != nil {
		// Already traced (a debugger in the container), or gone.
		return fmt.Errorf("attach: %w", err)
	}
	if err := unix.PtraceInterrupt(tid); err != nil {
		_ = unix.PtraceDetach(tid)
		return fmt.Errorf("interrupt: %w", err)
	}
	// A caller waiting for the helper stops at once; one in a mount that
	// does not return stays attached until the helper exits.
	deadline := time.Now().Add(2 * time.Second)
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(tid, &ws, unix.WALL|unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait: %w", err)
		}
		if pid == 0 {
			if time.Now().After(deadline) {
				return errors.New("it does not stop")
			}
			time.Sleep(time.Millisecond)
			continue
		}
		if !ws.Stopped() {
			return nil // it exited meanwhile
		}
		// A signal on its way in is handed back, not lost; a stop of
		// ptrace's own (the interrupt, or a group stop) passes none.
		sig := 0
		if uint32(ws)>>16 == 0 {
			sig = int(ws.StopSignal())
		}
		if _, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(tid), 0, uintptr(sig), 0, 0); e != 0 {
			return fmt.Errorf("detach: %w", e)
		}
		return nil
	}
}
