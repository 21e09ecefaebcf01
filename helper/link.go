package helper

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

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
	conn *net.UnixConn
	pid  int
	// answers carries the keeper's answers from the reading goroutine,
	// which closes gone when the keeper hangs up.
	answers chan keepMsg
	gone    chan struct{}
}

var errNoKeeper = errors.New("the keeper of the helper's listeners is not reachable")

// dial connects to the running keeper, or starts one and connects to it.
func (l *link) dial() error {
	conn, err := dialKeeper()
	if err == nil {
		l.conn = conn
		return nil
	}
	if err := spawn(l.binary, "keep"); err != nil {
		return err
	}
	deadline := time.Now().Add(waitPeer)
	for time.Now().Before(deadline) {
		if conn, err = dialKeeper(); err == nil {
			l.conn = conn
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("%w: %v", errNoKeeper, err)
}

func dialKeeper() (*net.UnixConn, error) {
	return net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: keeperSocket, Net: "unixpacket"})
}

// kept is one listener the keeper gave back.
type kept struct {
	token  string
	pid    int
	fd     int
	record mountvet.Record
}

// connect dials the keeper and reads what it keeps, which the caller
// adopts; then a goroutine reads the keeper's answers until it hangs up,
// when the returned channel is closed.
func (l *link) connect() ([]kept, <-chan struct{}, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.dial(); err != nil {
		return nil, nil, err
	}
	if pid, err := peerPID(l.conn); err == nil {
		l.pid = pid
	}
	var out []kept
	for {
		m, fd, err := readKeep(l.conn)
		if err != nil {
			l.conn.Close()
			l.conn = nil
			for _, k := range out {
				closeFD(k.fd)
			}
			return nil, nil, fmt.Errorf("read kept listeners: %w", err)
		}
		if m.Op == "end" {
			break
		}
		if m.Op == "take" && fd >= 0 && m.Record != nil {
			out = append(out, kept{token: m.Token, pid: m.Pid, fd: fd, record: *m.Record})
		} else if fd >= 0 {
			closeFD(fd)
		}
	}
	answers, gone := make(chan keepMsg, 1), make(chan struct{})
	l.answers, l.gone = answers, gone
	go func(conn *net.UnixConn) {
		defer close(gone)
		for {
			m, fd, err := readKeep(conn)
			if fd >= 0 {
				closeFD(fd)
			}
			if err != nil {
				logrus.Warnf("helper %d: the keeper is gone (%v)", os.Getpid(), err)
				return
			}
			answers <- m
		}
	}(l.conn)
	return out, gone, nil
}

// send sends m (and fd, if not negative) and waits for the keeper's answer.
func (l *link) send(m keepMsg, fd int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return errNoKeeper
	}
	if err := writeKeep(l.conn, m, fd); err != nil {
		return fmt.Errorf("%w: %v", errNoKeeper, err)
	}
	select {
	case a := <-l.answers:
		if a.Op != "ok" {
			return fmt.Errorf("%w: answered %q", errNoKeeper, a.Op)
		}
		return nil
	case <-l.gone:
		return errNoKeeper
	case <-time.After(waitPeer):
		return fmt.Errorf("%w: no answer in %s", errNoKeeper, waitPeer)
	}
}

// drop forgets a keeper that hung up.
func (l *link) drop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		l.conn.Close()
		l.conn = nil
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
