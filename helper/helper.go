// Package helper owns moat's one privileged process per host: started by
// the first create that needs it, reached over a unix socket only root may
// use, holding the seccomp listeners of every container and answering
// their trapped calls, and exiting once no container is left.
package helper

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
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
	// Op is "confirm" (is a listener of container ID served and kept?),
	// "views" (serve the /proc and /sys views) or "status".
	Op       string `json:"op"`
	ID       string `json:"id,omitempty"`
	Pid      int    `json:"pid,omitempty"`
	Metadata string `json:"metadata,omitempty"`
	// Since (Unix ns), for an exec: a listener handed over after it is
	// taken for the exec's if none has its pid (libcontainer may report
	// the pid of a parent).
	Since int64 `json:"since,omitempty"`
}

// answer is the helper's answer to confirm.
type answer struct {
	Error string `json:"error,omitempty"`
}

// Status is the helper's answer to "status".
type Status struct {
	Pid        int      `json:"pid"`
	KeeperPid  int      `json:"keeper_pid"`
	Containers []string `json:"containers"`
	// Views is where the /proc and /sys views are served, if they are.
	Views string `json:"views,omitempty"`
	// Goroutines and FDs are the helper's own counts: what a leak would
	// make grow.
	Goroutines int `json:"goroutines"`
	FDs        int `json:"fds"`
}

// server is the running helper.
type server struct {
	mu         sync.Mutex
	containers map[string]*served
	idle       *time.Timer
	done       chan struct{}
	link       *link
	// arrived is closed and replaced whenever a listener is added.
	arrived chan struct{}
	// recent are the listeners added in the last confirmWindow, by
	// container: a confirm must find one whose process has already exited
	// (an exec of ls, a run of true) and hung it up.
	recent map[string][]*listener
	// kick asks for a new link to the keeper now rather than at the next
	// retry: a listener could not be given to it.
	kick  chan struct{}
	views views
}

// confirmWait is how long a confirm waits for a listener to be served and
// kept: long enough for a keeper that went to be replaced.
const confirmWait = waitStart + waitPeer

// confirmWindow is how long a listener stays among the recent ones.
const confirmWindow = 2 * confirmWait

// served is one container: its mounts' record and its listeners, whose
// calls one goroutine answers in turn. The goroutine waits on the
// container's own epoll and answers on the thread that woke: a hand-off to
// another goroutine would cost each call a thread wake-up.
type served struct {
	c         *mountvet.Container
	listeners map[int]*listener
	epfd      int
	// sentGen is the generation of c's record the keeper has.
	sentGen uint64
}

// listener is one seccomp listener: the init's, or an exec's.
type listener struct {
	held
	arrived int64 // Unix ns
	// kept is closed once the keeper holds a copy.
	kept     chan struct{}
	keptOnce sync.Once
	// keepErr is why the keeper does not hold it yet; under server.mu.
	keepErr error
}

func (l *listener) markKept() { l.keptOnce.Do(func() { close(l.kept) }) }

// Serve runs the helper until it has been idle for IdleExit. It returns
// at once, with no error, if another helper already runs.
func Serve(binary string) error {
	lock, ln, err := startOnce(lockFile, Socket, "unix")
	if err != nil || ln == nil {
		return err
	}
	defer lock.Close()
	s := newServer(&link{binary: binary})
	s.idle = time.AfterFunc(IdleExit, s.idleExit)
	logrus.Infof("helper %d serving on %s", os.Getpid(), Socket)
	// Take back what a killed helper served before answering anyone.
	gone := s.relink()
	go s.keepLinked(gone)
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
	s.stopViews()
	s.link.bye()
	logrus.Infof("helper %d: no container for %s, exiting", os.Getpid(), IdleExit)
	return nil
}

func newServer(l *link) *server {
	return &server{containers: map[string]*served{}, done: make(chan struct{}), link: l,
		arrived: make(chan struct{}), recent: map[string][]*listener{}, kick: make(chan struct{}, 1)}
}

func (s *server) idleExit() {
	// Containers that only bind the views hand the helper no listener;
	// their mounts say they are there.
	if s.viewsFD() >= 0 && viewsInUse() {
		s.touch()
		return
	}
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
	if errors.Is(err, io.EOF) || (err == nil && n == 0 && oobn == 0) {
		// A create connects only to see that the helper is there; its
		// hand-over is coming.
		s.touch()
		return
	}
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
		s.handOver(buf[:n], fds)
		return
	}
	var req request
	if err := json.Unmarshal(buf[:n], &req); err != nil {
		logrus.Warnf("helper: bad request: %v", err)
		return
	}
	switch req.Op {
	case "confirm":
		var a answer
		if err := s.confirm(req.ID, req.Pid, req.Metadata, req.Since); err != nil {
			a.Error = err.Error()
		}
		_ = json.NewEncoder(conn).Encode(a)
	case "views":
		var a answer
		if err := s.ensureViews(); err != nil {
			a.Error = err.Error()
		}
		_ = json.NewEncoder(conn).Encode(a)
	case "status":
		_ = json.NewEncoder(conn).Encode(s.status())
	default:
		logrus.Warnf("helper: unknown request %q", req.Op)
	}
}

func (s *server) status() Status {
	// Not under s.mu: the link's lock is held while the keeper answers.
	st := Status{Pid: os.Getpid(), KeeperPid: s.link.keeperPID(), Containers: []string{}}
	if s.viewsFD() >= 0 {
		st.Views = ViewsDir
	}
	st.Goroutines = runtime.NumGoroutine()
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		st.FDs = len(fds)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.containers {
		st.Containers = append(st.Containers, id)
	}
	sort.Strings(st.Containers)
	return st
}

func peerUID(conn *net.UnixConn) (int, error) {
	cred, err := peerCred(conn)
	if err != nil {
		return -1, err
	}
	return int(cred.Uid), nil
}

func peerCred(conn *net.UnixConn) (*unix.Ucred, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, cerr
}

func closeFD(fd int) { _ = unix.Close(fd) }

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

// handOver takes the seccomp listener libcontainer hands over with the
// state of the container whose process it filters, and gives the keeper
// a copy.
func (s *server) handOver(msg []byte, fds []int) {
	var st specs.ContainerProcessState
	if err := json.Unmarshal(msg, &st); err != nil || len(fds) != 1 || st.State.ID == "" {
		logrus.Warnf("helper: bad listener hand-over (%d fds): %v", len(fds), err)
		for _, fd := range fds {
			closeFD(fd)
		}
		return
	}
	fd := fds[0]
	s.mu.Lock()
	sv := s.containers[st.State.ID]
	if sv == nil {
		// Read the mounts without the lock: other containers' calls go on.
		s.mu.Unlock()
		c, err := mountvet.NewContainer(st.State.ID, st.Pid)
		if err != nil {
			logrus.Errorf("helper: %v", err)
			closeFD(fd)
			return
		}
		s.mu.Lock()
		if sv = s.containers[st.State.ID]; sv == nil {
			if sv, err = s.serve(c); err != nil {
				s.mu.Unlock()
				logrus.Errorf("helper: %v", err)
				closeFD(fd)
				return
			}
		}
	}
	l, err := s.addListener(sv, fd, held{token: mountvet.Nonce(), pid: st.Pid, meta: st.Metadata})
	s.mu.Unlock()
	if err != nil {
		logrus.Errorf("helper: %v", err)
		closeFD(fd)
		return
	}
	logrus.Infof("helper: vetting %s (process %d)", st.State.ID, st.Pid)
	// Not under s.mu: the container's lock is held while a call of its
	// is carried out.
	rec, gen := sv.c.Record()
	if err := s.link.send(l.take(&rec), fd); err != nil {
		logrus.Warnf("helper: keep listener of %s: %v", st.State.ID, err)
		s.notKept(l, err)
		return
	}
	s.noteSent(sv, gen)
	l.markKept()
}

// notKept notes why the keeper lacks l, and asks for a new link to it,
// which gives it l.
func (s *server) notKept(l *listener, err error) {
	s.mu.Lock()
	l.keepErr = err
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// serve starts serving container c. s.mu is held.
func (s *server) serve(c *mountvet.Container) (*served, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("serve %s: epoll: %w", c.ID, err)
	}
	sv := &served{c: c, listeners: map[int]*listener{}, epfd: epfd}
	s.containers[c.ID] = sv
	go s.answer(sv)
	return sv, nil
}

// addListener watches fd, a listener of sv's. s.mu is held.
func (s *server) addListener(sv *served, fd int, h held) (*listener, error) {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(sv.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return nil, fmt.Errorf("watch a listener of %s: %w", sv.c.ID, err)
	}
	l := &listener{held: h, arrived: time.Now().UnixNano(), kept: make(chan struct{})}
	sv.listeners[fd] = l
	s.idle.Stop()
	s.noteRecent(sv.c.ID, l)
	close(s.arrived)
	s.arrived = make(chan struct{})
	return l, nil
}

// noteRecent adds l to the recent listeners and forgets those older than
// confirmWindow. s.mu is held.
func (s *server) noteRecent(id string, l *listener) {
	old := l.arrived - confirmWindow.Nanoseconds()
	for cid, ls := range s.recent {
		keep := ls[:0]
		for _, r := range ls {
			if r.arrived >= old {
				keep = append(keep, r)
			}
		}
		if len(keep) == 0 {
			delete(s.recent, cid)
		} else {
			s.recent[cid] = keep
		}
	}
	s.recent[id] = append(s.recent[id], l)
}

// confirm waits until the listener of process pid of container id is
// served and the keeper holds it: only then does a kill of the helper
// leave the container vetted.
func (s *server) confirm(id string, pid int, metadata string, since int64) error {
	timeout := time.After(confirmWait)
	for {
		s.mu.Lock()
		var l *listener
		for _, cand := range s.recent[id] {
			switch {
			case pid != 0 && cand.pid == pid:
				l = cand
			case pid == 0 && cand.meta == metadata:
				l = cand
			case pid != 0 && since != 0 && cand.arrived >= since && l == nil:
				l = cand
			}
		}
		arrived := s.arrived
		s.mu.Unlock()
		if l != nil {
			select {
			case <-l.kept:
				return nil
			case <-timeout:
				s.mu.Lock()
				why := l.keepErr
				s.mu.Unlock()
				if why == nil {
					why = errNoKeeper
				}
				return fmt.Errorf("the listener of %s is served but not kept: %w", id, why)
			}
		}
		select {
		case <-arrived:
		case <-timeout:
			return fmt.Errorf("the helper never got the listener of process %d of %s", pid, id)
		}
	}
}

// relink connects to the keeper (starting one if need be), adopts what it
// kept and sends it what it lacks. It returns a channel closed when the
// keeper goes, or nil if there is no keeper.
func (s *server) relink() <-chan struct{} {
	back, fuse, gone, err := s.link.connect()
	if err != nil {
		logrus.Errorf("helper %d: %v", os.Getpid(), err)
		return nil
	}
	if fuse >= 0 {
		s.resumeViews(fuse)
	} else if fd := s.viewsFD(); fd >= 0 {
		// A new keeper: it lacks the views' connection.
		if err := s.link.send(keepMsg{Op: "fuse"}, fd); err != nil {
			logrus.Errorf("helper: give the keeper the views: %v", err)
		}
	}
	have := map[string]bool{}
	var pids []int
	s.mu.Lock()
	for _, k := range back {
		have[k.token] = true
		pids = append(pids, k.pid)
		sv := s.containers[k.record.ID]
		if sv == nil {
			if sv, err = s.serve(mountvet.Restore(k.record)); err != nil {
				logrus.Errorf("helper: %v", err)
				closeFD(k.fd)
				continue
			}
		}
		l, err := s.addListener(sv, k.fd, k.held)
		if err != nil {
			logrus.Errorf("helper: %v", err)
			closeFD(k.fd)
			continue
		}
		l.markKept()
		logrus.Infof("helper: vetting %s again (process %d)", k.record.ID, k.pid)
	}
	type missing struct {
		sv *served
		fd int
		l  *listener
	}
	var send []missing
	for _, sv := range s.containers {
		for fd, l := range sv.listeners {
			if !have[l.token] {
				send = append(send, missing{sv, fd, l})
			}
		}
	}
	s.mu.Unlock()
	for _, o := range send {
		rec, gen := o.sv.c.Record()
		if err := s.link.send(o.l.take(&rec), o.fd); err != nil {
			logrus.Errorf("helper: give the keeper %s: %v", rec.ID, err)
			s.mu.Lock()
			o.l.keepErr = err
			s.mu.Unlock()
			continue
		}
		s.noteSent(o.sv, gen)
		o.l.markKept()
	}
	if len(pids) > 0 {
		// Taken back from a helper that died: it may have died holding
		// calls. The listeners are watched again, so restarted calls are
		// answered.
		go restartStranded(pids)
	}
	return gone
}

// restartStranded restarts the calls a dead helper took and never
// answered, in the containers of pids.
func restartStranded(pids []int) {
	tids, err := mountvet.RestartStranded(pids, os.Getpid())
	if len(tids) > 0 {
		logrus.Infof("helper: restarted the mount calls of tasks %v, left unanswered by a helper that died", tids)
	}
	if err != nil {
		logrus.Warnf("helper: %v", err)
	}
}

// keepLinked starts a new keeper whenever the one there goes. With no
// keeper it tries again every second, or at once when a listener could not
// be given to it.
func (s *server) keepLinked(gone <-chan struct{}) {
	for {
		var retry <-chan time.Time
		if gone == nil {
			retry = time.After(time.Second)
		}
		select {
		case <-gone:
		case <-retry:
		case <-s.kick:
			if gone != nil {
				select {
				case <-gone:
				default:
					// Linked again since the send failed: that
					// relink gave the keeper what it lacked.
					continue
				}
			}
		case <-s.done:
			return
		}
		gone = s.relink()
	}
}

// epollLoop hands every batch of events on epfd to handle, for as long as
// the process lives.
func epollLoop(epfd int, who string, handle func([]unix.EpollEvent)) {
	events := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			logrus.Errorf("%s: epoll: %v", who, err)
			return
		}
		handle(events[:n])
	}
}

// dropListener forgets fd, a listener of sv's whose processes are all
// gone; it reports whether sv has no listener left, and is then no longer
// among the served.
func (s *server) dropListener(sv *served, fd int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv.listeners[fd] != nil {
		_ = unix.EpollCtl(sv.epfd, unix.EPOLL_CTL_DEL, fd, nil)
		closeFD(fd)
		delete(sv.listeners, fd)
	}
	if len(sv.listeners) > 0 {
		return false
	}
	delete(s.containers, sv.c.ID)
	logrus.Infof("helper: %s is gone", sv.c.ID)
	if len(s.containers) == 0 {
		s.touch()
	}
	return true
}

// answer handles one container's calls in turn, until its last listener
// hangs up.
func (s *server) answer(sv *served) {
	defer func() {
		closeFD(sv.epfd)
		sv.c.Close()
	}()
	events := make([]unix.EpollEvent, 16)
	for {
		n, err := unix.EpollWait(sv.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			logrus.Errorf("helper: %s: epoll: %v", sv.c.ID, err)
			return
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if ev.Events&unix.EPOLLIN != 0 {
				s.call(sv, fd)
				continue
			}
			if ev.Events&(unix.EPOLLHUP|unix.EPOLLERR) != 0 && s.dropListener(sv, fd) {
				return
			}
		}
	}
}

// call answers the call pending on listener fd of sv's.
func (s *server) call(sv *served, fd int) {
	n, err := mountvet.Recv(fd)
	if err != nil {
		return // the caller was killed meanwhile
	}
	errno, why := sv.c.Handle(fd, n)
	if logrus.IsLevelEnabled(logrus.DebugLevel) {
		logrus.Debugf("helper: %s: call %d of %d: %v (%s)", sv.c.ID, n.Nr, n.Pid, errno, why)
	}
	if errno != 0 {
		logrus.Infof("helper: %s: refused or failed a mount call of process %d: %v (%s)", sv.c.ID, n.Pid, errno, why)
	}
	// The keeper learns of a changed record before the caller does: a
	// helper started after a kill decides the same.
	s.sendRecord(sv)
	if err := mountvet.Respond(fd, n.ID, errno); err != nil {
		logrus.Warnf("helper: %s: respond: %v", sv.c.ID, err)
	}
}

// noteSent records that the keeper has generation gen of sv's record.
func (s *server) noteSent(sv *served, gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen > sv.sentGen {
		sv.sentGen = gen
	}
}

// sendRecord gives the keeper sv's record if it changed since it was
// last given.
func (s *server) sendRecord(sv *served) {
	s.mu.Lock()
	sent := sv.sentGen
	s.mu.Unlock()
	if sv.c.Generation() == sent {
		return
	}
	rec, gen := sv.c.Record()
	if err := s.link.send(keepMsg{Op: "record", Record: &rec}, -1); err != nil {
		logrus.Warnf("helper: give the keeper the record of %s: %v", sv.c.ID, err)
		return
	}
	s.noteSent(sv, gen)
}

// leaveCallersCgroups moves the helper to the root of every cgroup
// hierarchy: it must not live, or die, with the shim or the dockerd that
// ran the create that started it.
func leaveCallersCgroups() {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/cgroup.procs")
	roots = append(roots, "/sys/fs/cgroup/cgroup.procs")
	pid := []byte(fmt.Sprint(os.Getpid()))
	for _, p := range roots {
		// Never created: on a cgroup v1 host /sys/fs/cgroup is a tmpfs,
		// where a write that creates would leave a file of ours.
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			continue
		}
		_, _ = f.Write(pid)
		f.Close()
	}
}
