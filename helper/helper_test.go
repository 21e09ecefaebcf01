package helper

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/mountvet"
)

func newTestServer(t *testing.T) *server {
	t.Helper()
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(epfd) })
	s := &server{containers: map[string]*served{}, done: make(chan struct{}), epfd: epfd, byFD: map[int]*served{},
		link: &link{}, arrived: make(chan struct{}), recent: map[string][]*listener{}}
	s.idle = time.AfterFunc(time.Hour, func() {})
	return s
}

// A create or exec whose process has already exited, and hung up its
// listener, still confirms: the helper got the listener and the keeper
// holds it. One of another create does not count.
func TestConfirmAfterHangUp(t *testing.T) {
	s := newTestServer(t)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[1])
	sv := s.serve(mountvet.Restore(mountvet.Record{ID: "c"}))
	s.mu.Lock()
	l := s.addListener(sv, p[0], held{token: "t", pid: 7, meta: "nonce"})
	s.mu.Unlock()
	l.markKept()
	s.dropListener(sv, p[0]) // the process exited: the container is gone
	since := time.Unix(0, l.arrived)
	for _, c := range []struct {
		name  string
		pid   int
		meta  string
		since time.Time
	}{
		{"create, by nonce", 0, "nonce", time.Time{}},
		{"exec, by pid", 7, "", since},
		{"exec, by arrival", 8, "", since},
	} {
		var sinceNS int64
		if !c.since.IsZero() {
			sinceNS = c.since.UnixNano()
		}
		if err := s.confirm("c", c.pid, c.meta, sinceNS); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if err := s.confirm("c", 0, "another create's", 0); err == nil {
		t.Error("a create confirmed on another create's listener")
	}
}
