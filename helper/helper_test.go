package helper

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/mountvet"
)

func newTestServer(t *testing.T) *server {
	t.Helper()
	s := newServer(&link{})
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
	s.mu.Lock()
	sv, err := s.serve(mountvet.Restore(mountvet.Record{ID: "c"}))
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.addListener(sv, p[0], held{token: "t", pid: 7, meta: "nonce"})
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	l.markKept()
	// The process exits: its listener hangs up, and the container is gone.
	unix.Close(p[1])
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s.mu.Lock()
		n := len(s.containers)
		s.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the hung-up listener was never dropped")
		}
	}
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
