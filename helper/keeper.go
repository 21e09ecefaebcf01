package helper

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/mountvet"
)

// The keeper is a second process that holds a copy of every listener the
// helper serves, with the container's mount record. A seccomp listener
// lives as long as some process holds it; if the helper is killed, the
// keeper still does, starts a new helper and gives it everything back.
// If the keeper is killed, the helper starts a new one and hands it
// everything again. The keeper likewise holds the /dev/fuse connection of
// the /proc and /sys views, which a new helper serves on. Only a kill of both loses the listeners, and then
// the trapped calls fail: they never pass unvetted.
const (
	keeperSocket = Dir + "/keeper.sock"
	keeperLock   = Dir + "/keeper.lock"
	// waitPeer is how long either process waits for the other to answer.
	waitPeer = 3 * time.Second
	// waitStart is how long a started helper or keeper has to come up.
	waitStart = 5 * time.Second
)

// keepMsg is one message between helper and keeper, on a SOCK_SEQPACKET
// connection; "take" carries a listener.
type keepMsg struct {
	Op     string           `json:"op"` // take, record, fuse, end, bye, ok
	Token  string           `json:"token,omitempty"`
	Pid    int              `json:"pid,omitempty"`
	Meta   string           `json:"meta,omitempty"`
	Record *mountvet.Record `json:"record,omitempty"`
}

// held names one listener to both processes.
type held struct {
	token string // the helper's name for it
	pid   int    // the process libcontainer handed it over for
	// meta is the listener metadata libcontainer sent along: the nonce
	// of the create that made the container.
	meta string
}

// take is the message that gives the other process a copy of h.
func (h held) take(rec *mountvet.Record) keepMsg {
	return keepMsg{Op: "take", Token: h.token, Pid: h.pid, Meta: h.meta, Record: rec}
}

func heldOf(m keepMsg) held { return held{token: m.Token, pid: m.Pid, meta: m.Meta} }

type keptListener struct {
	held
	id string
	fd int
}

// keeper is the keeping process's state.
type keeper struct {
	binary    string
	mu        sync.Mutex
	listeners map[string]keptListener // by token
	records   map[string]mountvet.Record
	epfd      int
	byFD      map[int]string
	// fuse is the views' /dev/fuse connection, or -1.
	fuse int
}

// Keep runs the keeper until the helper says goodbye, or is gone, with
// nothing left to keep. binary is what it runs to start a new helper.
func Keep(binary string) error {
	lock, ln, err := startOnce(keeperLock, keeperSocket, "unixpacket")
	if err != nil || ln == nil {
		return err
	}
	defer lock.Close()
	defer func() {
		_ = os.Remove(keeperSocket)
		ln.Close()
	}()
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	k := newKeeper(binary, epfd)
	go k.watch()
	logrus.Infof("keeper %d keeping listeners on %s", os.Getpid(), keeperSocket)
	_ = ln.SetDeadline(time.Now().Add(waitPeer))
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return fmt.Errorf("keeper accept: %w", err)
			}
			if k.count() == 0 {
				logrus.Infof("keeper %d: no helper and nothing to keep, exiting", os.Getpid())
				return nil
			}
			k.startHelper()
			_ = ln.SetDeadline(time.Now().Add(waitPeer))
			continue
		}
		if uid, err := peerUID(conn); err != nil || uid != 0 {
			logrus.Warnf("keeper: refused a connection from uid %d (%v)", uid, err)
			conn.Close()
			continue
		}
		_ = ln.SetDeadline(time.Time{})
		pc, err := newPconn(conn)
		if err != nil {
			logrus.Warnf("keeper: %v", err)
			continue
		}
		bye := k.session(pc)
		pc.Close()
		if k.count() == 0 {
			logrus.Infof("keeper %d: the helper is gone (goodbye said: %t) with nothing to keep, exiting", os.Getpid(), bye)
			return nil
		}
		logrus.Warnf("keeper %d: the helper is gone; starting another for %d listeners", os.Getpid(), k.count())
		k.startHelper()
		_ = ln.SetDeadline(time.Now().Add(waitPeer))
	}
}

// startOnce begins a process of which one runs per host: it takes the
// lock, leaves the caller's cgroups and listens on socket, which only
// root may use. It returns a nil listener if another such process runs.
func startOnce(lockPath, socket, network string) (*os.File, *net.UnixListener, error) {
	lock, ok, err := takeLock(lockPath, socket)
	if err != nil || !ok {
		return nil, nil, err
	}
	leaveCallersCgroups()
	_ = os.Remove(socket)
	ln, err := net.ListenUnix(network, &net.UnixAddr{Name: socket, Net: network})
	if err != nil {
		lock.Close()
		return nil, nil, fmt.Errorf("listen on %s: %w", socket, err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(socket, 0o600); err != nil {
		ln.Close()
		lock.Close()
		return nil, nil, err
	}
	return lock, ln, nil
}

// takeLock takes the lock of a process of which one runs per host. When
// another holds it and answers on its socket, ok is false; one that is
// exiting is waited for.
func takeLock(path, socket string) (*os.File, bool, error) {
	if err := os.MkdirAll(Dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("helper dir: %w", err)
	}
	lock, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	deadline := time.Now().Add(waitPeer)
	for {
		err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return lock, true, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			lock.Close()
			return nil, false, fmt.Errorf("lock %s: %w", path, err)
		}
		if answers(socket) || time.Now().After(deadline) {
			lock.Close()
			return nil, false, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func answers(socket string) bool {
	for _, network := range []string{"unix", "unixpacket"} {
		if c, err := net.Dial(network, socket); err == nil {
			c.Close()
			return true
		}
	}
	return false
}

// newKeeper keeps nothing yet; epfd is where it watches listeners.
func newKeeper(binary string, epfd int) *keeper {
	return &keeper{binary: binary, listeners: map[string]keptListener{}, records: map[string]mountvet.Record{},
		epfd: epfd, byFD: map[int]string{}, fuse: -1}
}

func (k *keeper) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := len(k.listeners)
	if k.fuse >= 0 {
		n++
	}
	return n
}

// keepFuse holds fd, the views' connection, instead of any before.
func (k *keeper) keepFuse(fd int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fuse >= 0 {
		unix.Close(k.fuse)
	}
	k.fuse = fd
}

func (k *keeper) startHelper() {
	if err := spawn(k.binary, "serve"); err != nil {
		logrus.Errorf("keeper: %v", err)
	}
}

// session serves one helper's connection: it gives the helper what is
// kept, then keeps what the helper sends until it hangs up. It reports
// whether the helper said goodbye.
func (k *keeper) session(conn pconn) bool {
	k.mu.Lock()
	var back []keptListener
	for _, l := range k.listeners {
		back = append(back, l)
	}
	fuse := k.fuse
	recs := make(map[string]mountvet.Record, len(k.records))
	for id, r := range k.records {
		recs[id] = r
	}
	k.mu.Unlock()
	if fuse >= 0 {
		if err := writeKeep(conn, keepMsg{Op: "fuse"}, fuse); err != nil {
			logrus.Warnf("keeper: give back the views: %v", err)
			return false
		}
	}
	for _, l := range back {
		rec := recs[l.id]
		if err := writeKeep(conn, l.take(&rec), l.fd); err != nil {
			logrus.Warnf("keeper: give back: %v", err)
			return false
		}
	}
	if err := writeKeep(conn, keepMsg{Op: "end"}, -1); err != nil {
		return false
	}
	for {
		m, fd, err := readKeep(conn)
		if err != nil {
			return false
		}
		switch m.Op {
		case "take":
			if fd < 0 || m.Record == nil {
				logrus.Warnf("keeper: take without listener or record")
				break
			}
			k.take(m, fd)
		case "fuse":
			if fd >= 0 {
				k.keepFuse(fd)
			}
		case "record":
			if m.Record != nil {
				k.mu.Lock()
				k.records[m.Record.ID] = *m.Record
				k.mu.Unlock()
			}
		case "bye":
			// The helper unmounted the views: nothing uses them.
			k.keepFuse(-1)
			_ = writeKeep(conn, keepMsg{Op: "ok"}, -1)
			return true
		}
		if err := writeKeep(conn, keepMsg{Op: "ok", Token: m.Token}, -1); err != nil {
			return false
		}
	}
}

func (k *keeper) take(m keepMsg, fd int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.listeners[m.Token]; ok {
		unix.Close(fd)
		return
	}
	// Events 0: only a hang-up, when the container's processes are gone.
	if err := unix.EpollCtl(k.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Fd: int32(fd)}); err != nil {
		logrus.Errorf("keeper: watch listener of %s: %v", m.Record.ID, err)
	}
	k.listeners[m.Token] = keptListener{held: heldOf(m), id: m.Record.ID, fd: fd}
	k.byFD[fd] = m.Token
	k.records[m.Record.ID] = *m.Record
}

// watch lets go of listeners whose container is gone.
func (k *keeper) watch() {
	epollLoop(k.epfd, "keeper", func(events []unix.EpollEvent) {
		k.mu.Lock()
		defer k.mu.Unlock()
		for _, ev := range events {
			fd := int(ev.Fd)
			token, ok := k.byFD[fd]
			if !ok {
				continue
			}
			_ = unix.EpollCtl(k.epfd, unix.EPOLL_CTL_DEL, fd, nil)
			unix.Close(fd)
			delete(k.byFD, fd)
			id := k.listeners[token].id
			delete(k.listeners, token)
			if !k.holds(id) {
				delete(k.records, id)
			}
		}
	})
}

func (k *keeper) holds(id string) bool {
	for _, l := range k.listeners {
		if l.id == id {
			return true
		}
	}
	return false
}

// pconn is one end of a helper-keeper connection: a SOCK_SEQPACKET
// socket used with blocking calls, so that an answer wakes the waiting
// thread at once rather than through Go's poller.
type pconn struct {
	f   *os.File
	buf []byte // for reading: allocated once, a record can be large
}

// newPconn takes over conn's socket.
func newPconn(conn *net.UnixConn) (pconn, error) {
	defer conn.Close()
	f, err := conn.File()
	if err != nil {
		return pconn{}, err
	}
	_ = f.Fd() // blocking mode
	return pconn{f: f, buf: make([]byte, 1<<20)}, nil
}

func (c pconn) fd() int      { return int(c.f.Fd()) }
func (c pconn) Close() error { return c.f.Close() }

// peer returns the credentials of the process at the other end.
func (c pconn) peer() (*unix.Ucred, error) {
	return unix.GetsockoptUcred(c.fd(), unix.SOL_SOCKET, unix.SO_PEERCRED)
}

// writeKeep sends m, with fd when it is not negative.
func writeKeep(c pconn, m keepMsg, fd int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	return unix.Sendmsg(c.fd(), b, oob, nil, unix.MSG_NOSIGNAL)
}

// readKeep receives one message and the listener it carries, or -1.
func readKeep(c pconn) (keepMsg, int, error) {
	buf := c.buf
	var oobArr [64]byte
	oob := oobArr[:unix.CmsgSpace(4)]
	var n, oobn int
	var err error
	for {
		n, oobn, _, _, err = unix.Recvmsg(c.fd(), buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return keepMsg{}, -1, err
	}
	if n == 0 && oobn == 0 {
		return keepMsg{}, -1, errors.New("hung up")
	}
	fds, err := parseFDs(oob[:oobn])
	if err != nil {
		return keepMsg{}, -1, err
	}
	fd := -1
	for i, f := range fds {
		if i == 0 {
			fd = f
		} else {
			unix.Close(f)
		}
	}
	var m keepMsg
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return keepMsg{}, -1, fmt.Errorf("bad message: %w", err)
	}
	return m, fd, nil
}
