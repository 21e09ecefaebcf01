package mountvet

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// strandedEnv makes the test binary a process that installs a filter
// sending mount to a listener, hands the listener over on fd 3 and calls
// mount: it exits 0 if the call fails with EPERM, the answer the test gives.
const strandedEnv = "MOAT_TEST_STRANDED_CALLER"

func TestMain(m *testing.M) {
	if os.Getenv(strandedEnv) != "" {
		if err := strandedCaller(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func strandedCaller() error {
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_MOUNT},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_USER_NOTIF},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	lfd, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&fprog)))
	if e != 0 {
		return fmt.Errorf("seccomp: %w", e)
	}
	if err := unix.Sendmsg(3, []byte{0}, unix.UnixRights(int(lfd)), nil, 0); err != nil {
		return fmt.Errorf("hand over the listener: %w", err)
	}
	unix.Close(int(lfd))
	err := unix.Mount("none", "/", "none", 0, "")
	if !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("mount: %v, want EPERM", err)
	}
	return nil
}

// A call taken from the listener by a helper that then died is restarted,
// and the listener's next reader gets it; a caller of the host's user
// namespace is left alone.
func TestRestartStranded(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, tc := range []struct {
		name    string
		userns  bool
		restart bool
	}{
		{"caller in a user namespace", true, true},
		{"caller of the host", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			ours := os.NewFile(uintptr(fds[0]), "ours")
			theirs := os.NewFile(uintptr(fds[1]), "theirs")
			defer ours.Close()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), strandedEnv+"=1")
			cmd.ExtraFiles = []*os.File{theirs}
			cmd.Stderr = os.Stderr
			if tc.userns {
				cmd.SysProcAttr = &syscall.SysProcAttr{
					Cloneflags:  syscall.CLONE_NEWUSER,
					UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 300000, Size: 65536}},
					GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 300000, Size: 65536}},
				}
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			theirs.Close()
			// Not waited for until the restart is done: a wait of ours
			// would take the stop that ptrace waits for.
			exited := make(chan error, 1)
			waiting := false
			defer func() {
				_ = cmd.Process.Kill()
				if !waiting {
					go func() { exited <- cmd.Wait() }()
				}
				<-exited
			}()

			oob := make([]byte, unix.CmsgSpace(4))
			_, oobn, _, _, err := unix.Recvmsg(fds[0], make([]byte, 1), oob, unix.MSG_CMSG_CLOEXEC)
			if err != nil {
				t.Fatal(err)
			}
			scms, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil || len(scms) != 1 {
				t.Fatalf("no listener: %v", err)
			}
			lfds, err := unix.ParseUnixRights(&scms[0])
			if err != nil || len(lfds) != 1 {
				t.Fatalf("no listener: %v", err)
			}
			lfd := lfds[0]
			defer unix.Close(lfd)

			// Taken and never answered, as by a helper killed meanwhile.
			first, err := Recv(lfd)
			if err != nil {
				t.Fatal(err)
			}
			// A child of the helper is one of its workers, never a caller.
			if got, err := RestartStranded([]int{cmd.Process.Pid}, os.Getpid()); err != nil || len(got) != 0 || !Valid(lfd, first.ID) {
				t.Fatalf("restarted %v (%v) of the helper's own children", got, err)
			}
			// Here this process only plays the helper: its child is the
			// caller.
			got, err := RestartStranded([]int{cmd.Process.Pid}, -1)
			if err != nil {
				t.Fatal(err)
			}
			waiting = true
			go func() { exited <- cmd.Wait() }()
			if !tc.restart {
				if len(got) != 0 {
					t.Fatalf("restarted %v, a caller of the host", got)
				}
				if !Valid(lfd, first.ID) {
					t.Fatal("the host caller's call is no longer pending")
				}
				return
			}
			if len(got) != 1 || got[0] != int(first.Pid) {
				t.Fatalf("restarted %v, want [%d]", got, first.Pid)
			}
			if Valid(lfd, first.ID) {
				t.Fatal("the stranded call still waits")
			}
			again := recvWithin(t, lfd, 10*time.Second)
			if again.ID == first.ID || again.Pid != first.Pid || again.Nr != first.Nr {
				t.Fatalf("restarted call %+v, first %+v", again, first)
			}
			if err := Respond(lfd, again.ID, unix.EPERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				exited <- err
				if err != nil {
					t.Fatalf("caller: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the caller did not get the answer")
			}
		})
	}
}

// recvWithin takes the next call from lfd, failing the test if none comes
// within d.
func recvWithin(t *testing.T, lfd int, d time.Duration) *Notif {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(lfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, int(d.Milliseconds()))
	if err != nil || n == 0 {
		t.Fatalf("no call within %s: %v", d, err)
	}
	c, err := Recv(lfd)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
