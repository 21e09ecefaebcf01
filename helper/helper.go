// Package helper owns moat's one privileged process per host: started by
// the first create that needs it, reached over a unix socket only root may
// use, holding the seccomp listeners of every container and answering
// their trapped calls, and exiting once no container is left.
package helper

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/mountvet"
)

const (
	// Dir holds the socket and the lock; only root may enter it.
	Dir = "/run/moat-helper"
	// Socket is where creates and libcontainer reach the helper.
	Socket   = Dir + "/helper.sock"
	lockFile = Dir + "/helper.lock"
	// LogFile is the helper's log.
	LogFile = "/var/log/moat/helper.log"
	// IdleExit is how long the helper stays with no container.
	IdleExit = 60 * time.Second
)

// request is a control message from moat itself.
type request struct {
	Op string `json:"op"` // "hello" (a create is coming) or "status"
}

// Status is the helper's answer to "status".
type Status struct {
	Pid        int      `json:"pid"`
	Containers []string `json:"containers"`
}

// server is the running helper.
type server struct {
	mu         sync.Mutex
	containers map[string]*served
	idle       *time.Timer
	done       chan struct{}
	epfd       int
	byFD       map[int]*served
}

// served is one container: its mounts' record and its listeners, whose
// calls one goroutine answers in turn.
type served struct {
	c         *mountvet.Container
	listeners map[int]bool
	ready     chan int // listeners with a call pending
}

// Serve runs the helper until it has been idle for IdleExit. It returns
// at once, with no error, if another helper already runs.
func Serve() error {
	if err := os.MkdirAll(Dir, 0o700); err != nil {
		return fmt.Errorf("helper dir: %w", err)
	}
	lock, err := os.OpenFile(lockFile, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("helper lock: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			// Another helper runs, or one exiting: wait for it to finish
			// and take over only if it is gone.
			if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
				return fmt.Errorf("helper lock: %w", err)
			}
			if c, err := net.Dial("unix", Socket); err == nil {
				c.Close()
				return nil
			}
		} else {
			return fmt.Errorf("helper lock: %w", err)
		}
	}
	leaveCallersCgroups()
	_ = os.Remove(Socket)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: Socket, Net: "unix"})
	if err != nil {
		return fmt.Errorf("listen on %s: %w", Socket, err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(Socket, 0o600); err != nil {
		return err
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	s := &server{containers: map[string]*served{}, done: make(chan struct{}), epfd: epfd, byFD: map[int]*served{}}
	s.idle = time.AfterFunc(IdleExit, s.idleExit)
	logrus.Infof("helper %d serving on %s", os.Getpid(), Socket)
	go s.poll()
	go func() {
		for {
			conn, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			go s.handleConn(conn)
		}
	}()
	<-s.done
	// Unlink before closing, under the lock: a create that finds no
	// socket starts a helper, which waits for this one's lock.
	_ = os.Remove(Socket)
	ln.Close()
	logrus.Infof("helper %d: no container for %s, exiting", os.Getpid(), IdleExit)
	return nil
}

func (s *server) idleExit() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.containers) == 0 {
		select {
		case <-s.done:
		default:
			close(s.done)
		}
	}
}

// touch pushes the idle exit back: a create is about to hand over a
// listener, or a container just went.
func (s *server) touch() {
	s.idle.Reset(IdleExit)
}

func (s *server) handleConn(conn *net.UnixConn) {
	defer conn.Close()
	if uid, err := peerUID(conn); err != nil || uid != 0 {
		logrus.Warnf("helper: refused a connection from uid %d (%v): only root may use %s", uid, err, Socket)
		return
	}
	buf := make([]byte, 1<<16)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		logrus.Warnf("helper: read request: %v", err)
		return
	}
	fds, err := parseFDs(oob[:oobn])
	if err != nil {
		logrus.Warnf("helper: read request: %v", err)
		return
	}
	if len(fds) > 0 {
		s.addListener(buf[:n], fds)
		return
	}
	var req request
	if err := json.Unmarshal(buf[:n], &req); err != nil {
		logrus.Warnf("helper: bad request: %v", err)
		return
	}
	switch req.Op {
	case "hello":
		s.touch()
		_, _ = conn.Write([]byte(`{}`))
	case "status":
		_ = json.NewEncoder(conn).Encode(s.status())
	default:
		logrus.Warnf("helper: unknown request %q", req.Op)
	}
}

func (s *server) status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Pid: os.Getpid(), Containers: []string{}}
	for id := range s.containers {
		st.Containers = append(st.Containers, id)
	}
	sort.Strings(st.Containers)
	return st
}

func peerUID(conn *net.UnixConn) (int, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if cerr != nil {
		return -1, cerr
	}
	return int(cred.Uid), nil
}

func parseFDs(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		f, err := unix.ParseUnixRights(&m)
		if err != nil {
			return nil, err
		}
		fds = append(fds, f...)
	}
	return fds, nil
}

// addListener takes the seccomp listener libcontainer hands over with the
// state of the container whose process it filters.
func (s *server) addListener(msg []byte, fds []int) {
	var st specs.ContainerProcessState
	if err := json.Unmarshal(msg, &st); err != nil || len(fds) != 1 || st.State.ID == "" {
		logrus.Warnf("helper: bad listener hand-over (%d fds): %v", len(fds), err)
		for _, fd := range fds {
			unix.Close(fd)
		}
		return
	}
	fd := fds[0]
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.containers[st.State.ID]
	if sv == nil {
		c, err := mountvet.NewContainer(st.State.ID, st.Pid)
		if err != nil {
			logrus.Errorf("helper: %v", err)
			unix.Close(fd)
			return
		}
		sv = &served{c: c, listeners: map[int]bool{}, ready: make(chan int, 64)}
		s.containers[st.State.ID] = sv
		go s.answer(sv)
	}
	sv.listeners[fd] = true
	s.byFD[fd] = sv
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(fd)}
	if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		logrus.Errorf("helper: watch listener of %s: %v", st.State.ID, err)
	}
	s.idle.Stop()
	logrus.Infof("helper: vetting %s (process %d)", st.State.ID, st.Pid)
}

// poll waits on every listener and passes those with a pending call to
// their container's goroutine; a listener whose processes are all gone
// hangs up.
func (s *server) poll() {
	events := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(s.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			logrus.Errorf("helper: epoll: %v", err)
			return
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			s.mu.Lock()
			sv := s.byFD[fd]
			s.mu.Unlock()
			if sv == nil {
				continue
			}
			if ev.Events&unix.EPOLLIN != 0 {
				sv.ready <- fd
				continue
			}
			if ev.Events&(unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				s.dropListener(sv, fd)
			}
		}
	}
}

func (s *server) dropListener(sv *served, fd int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = unix.EpollCtl(s.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	unix.Close(fd)
	delete(s.byFD, fd)
	delete(sv.listeners, fd)
	if len(sv.listeners) == 0 {
		delete(s.containers, sv.c.ID)
		close(sv.ready)
		logrus.Infof("helper: %s is gone", sv.c.ID)
		if len(s.containers) == 0 {
			s.touch()
		}
	}
}

// answer handles one container's calls in turn.
func (s *server) answer(sv *served) {
	for fd := range sv.ready {
		n, err := mountvet.Recv(fd)
		if err == nil {
			errno, why := sv.c.Handle(fd, n)
			logrus.Debugf("helper: %s: call %d of %d: %v (%s)", sv.c.ID, n.Nr, n.Pid, errno, why)
			if errno != 0 {
				logrus.Infof("helper: %s: refused or failed a mount call of process %d: %v (%s)", sv.c.ID, n.Pid, errno, why)
			}
			if err := mountvet.Respond(fd, n.ID, errno); err != nil {
				logrus.Warnf("helper: %s: respond: %v", sv.c.ID, err)
			}
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(fd)}
		if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_MOD, fd, &ev); err != nil {
			s.dropListener(sv, fd)
		}
	}
}

// leaveCallersCgroups moves the helper to the root of every cgroup
// hierarchy: it must not live, or die, with the shim or the dockerd that
// ran the create that started it.
func leaveCallersCgroups() {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/cgroup.procs")
	roots = append(roots, "/sys/fs/cgroup/cgroup.procs")
	pid := []byte(fmt.Sprint(os.Getpid()))
	for _, p := range roots {
		_ = os.WriteFile(p, pid, 0)
	}
}
