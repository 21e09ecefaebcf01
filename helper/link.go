package helper

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/mountvet"
)

// link is the helper's connection to its keeper. Every listener the
// helper takes is sent over it and acknowledged before a create is told
// its container is vetted; when the keeper goes, the helper starts
// another and sends it everything.
type link struct {
	binary string
	// mu serialises requests: one message and its answer at a time.
	mu   sync.Mutex
	conn *pconn
	pid  int
	// lost is closed when conn is dropped: the keeper exited, or its
	// connection went wrong.
	lost chan struct{}
}

func (l *link) attach(c pconn) {
	l.conn = &c
	l.lost = make(chan struct{})
}

var errNoKeeper = errors.New("the keeper of the helper's listeners is not reachable")

// dial connects to the running keeper, or starts one and connects to it.
func (l *link) dial() error {
	err := reach(l.binary, "keep", func() error {
		conn, err := dialKeeper()
		if err == nil {
			l.attach(conn)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("%w: %v", errNoKeeper, err)
	}
	return nil
}

func dialKeeper() (pconn, error) {
	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: keeperSocket, Net: "unixpacket"})
	if err != nil {
		return pconn{}, err
	}
	c, err := newPconn(conn)
	if err != nil {
		return pconn{}, err
	}
	// A keeper that hangs does not hang the helper.
	tv := unix.NsecToTimeval(waitPeer.Nanoseconds())
	if err := unix.SetsockoptTimeval(c.fd(), unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		c.Close()
		return pconn{}, err
	}
	return c, nil
}

// kept is one listener the keeper gave back.
type kept struct {
	held
	fd     int
	record mountvet.Record
}

// connect dials the keeper and reads what it keeps, which the caller
// adopts: listeners, and the views' connection (-1 if none). The returned
// channel is closed when the keeper process exits.
func (l *link) connect() ([]kept, int, <-chan struct{}, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.dial(); err != nil {
		return nil, -1, nil, err
	}
	cred, err := l.conn.peer()
	if err != nil {
		l.dropLocked()
		return nil, -1, nil, fmt.Errorf("keeper's credentials: %w", err)
	}
	l.pid = int(cred.Pid)
	pidfd, err := unix.PidfdOpen(l.pid, 0)
	if err != nil {
		l.dropLocked()
		return nil, -1, nil, fmt.Errorf("watch keeper %d: %w", l.pid, err)
	}
	var out []kept
	fuse := -1
	for {
		m, fd, err := readKeep(*l.conn)
		if err != nil {
			l.dropLocked()
			unix.Close(pidfd)
			for _, k := range out {
				closeFD(k.fd)
			}
			if fuse >= 0 {
				closeFD(fuse)
			}
			return nil, -1, nil, fmt.Errorf("read kept listeners: %w", err)
		}
		if m.Op == "end" {
			break
		}
		switch {
		case m.Op == "take" && fd >= 0 && m.Record != nil:
			out = append(out, kept{held: heldOf(m), fd: fd, record: *m.Record})
		case m.Op == "fuse" && fd >= 0 && fuse < 0:
			fuse = fd
		case fd >= 0:
			closeFD(fd)
		}
	}
	go func(pid int, c *pconn) {
		defer l.dropIf(c)
		defer unix.Close(pidfd)
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err != unix.EINTR {
				break
			}
		}
		logrus.Warnf("helper %d: the keeper %d is gone", os.Getpid(), pid)
	}(l.pid, l.conn)
	return out, fuse, l.lost, nil
}

// send sends m (and fd, if not negative) and waits for the keeper's answer.
func (l *link) send(m keepMsg, fd int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return errNoKeeper
	}
	if err := writeKeep(*l.conn, m, fd); err != nil {
		l.dropLocked()
		return fmt.Errorf("%w: %v", errNoKeeper, err)
	}
	a, afd, err := readKeep(*l.conn)
	if afd >= 0 {
		closeFD(afd)
	}
	if err != nil || a.Op != "ok" {
		// The answers are out of step: start again with a new connection.
		l.dropLocked()
		return fmt.Errorf("%w: answer %q: %v", errNoKeeper, a.Op, err)
	}
	return nil
}

// drop forgets a keeper that hung up.
func (l *link) drop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropLocked()
}

// dropIf drops c if it is still the connection.
func (l *link) dropIf(c *pconn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == c {
		l.dropLocked()
	}
}

func (l *link) dropLocked() {
	if l.conn != nil {
		l.conn.Close()
		l.conn = nil
		close(l.lost)
	}
}

// bye tells the keeper the helper exits with nothing to keep.
func (l *link) bye() {
	if err := l.send(keepMsg{Op: "bye"}, -1); err != nil {
		logrus.Warnf("helper: goodbye to the keeper: %v", err)
	}
	l.drop()
}

func (l *link) keeperPID() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return 0
	}
	return l.pid
}
