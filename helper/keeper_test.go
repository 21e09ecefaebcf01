package helper

import (
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/mountvet"
)

// pair is a connected SOCK_SEQPACKET pair, as helper and keeper use.
func pair(t *testing.T) (pconn, pconn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a := pconn{f: os.NewFile(uintptr(fds[0]), "helper"), buf: make([]byte, 1<<20)}
	b := pconn{f: os.NewFile(uintptr(fds[1]), "keeper"), buf: make([]byte, 1<<20)}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func newTestKeeper(t *testing.T) *keeper {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	k := newKeeper("", epfd)
	go k.watch()
	return k
}

func read(t *testing.T, c pconn) (keepMsg, int) {
	t.Helper()
	m, fd, err := readKeep(c)
	if err != nil {
		t.Fatal(err)
	}
	return m, fd
}

// A listener given to the keeper comes back to the next helper, with its
// record, as the same open file; the keeper lets go of it when it hangs
// up. A pipe stands in for the listener: both hang up when the other end
// is gone.
func TestKeeperKeepsAndGivesBack(t *testing.T) {
	k := newTestKeeper(t)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	rec := mountvet.Record{ID: "c1", Initial: []mountvet.KnownMount{{MountID: 7, Dev: "0:42", Root: "/", Locks: unix.MS_RDONLY}}}

	// The first helper: nothing to adopt; it gives one listener and dies.
	h, kc := pair(t)
	done := make(chan bool)
	go func() { done <- k.session(kc) }()
	if m, _ := read(t, h); m.Op != "end" {
		t.Fatalf("empty keeper sent %q first, want end", m.Op)
	}
	if err := writeKeep(h, keepMsg{Op: "take", Token: "t1", Pid: 42, Record: &rec}, p[0]); err != nil {
		t.Fatal(err)
	}
	if m, _ := read(t, h); m.Op != "ok" || m.Token != "t1" {
		t.Fatalf("take answered %+v", m)
	}
	h.Close()
	if bye := <-done; bye {
		t.Fatal("a helper that hung up said goodbye")
	}
	if k.count() != 1 {
		t.Fatalf("keeper holds %d listeners, want 1", k.count())
	}

	// The next helper gets it back.
	h2, kc2 := pair(t)
	go func() { done <- k.session(kc2) }()
	m, fd := read(t, h2)
	if m.Op != "take" || m.Token != "t1" || m.Pid != 42 || m.Record == nil || m.Record.ID != "c1" || len(m.Record.Initial) != 1 {
		t.Fatalf("keeper gave back %+v", m)
	}
	if fd < 0 {
		t.Fatal("no listener came back")
	}
	if !sameFile(t, fd, p[0]) {
		t.Fatal("the listener given back is another file")
	}
	if m, _ := read(t, h2); m.Op != "end" {
		t.Fatalf("after the listeners came %q, want end", m.Op)
	}

	// The container goes: the keeper lets go.
	unix.Close(p[1])
	deadline := time.Now().Add(5 * time.Second)
	for k.count() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the keeper still holds a hung-up listener")
		}
		time.Sleep(time.Millisecond)
	}
	if err := writeKeep(h2, keepMsg{Op: "bye"}, -1); err != nil {
		t.Fatal(err)
	}
	if bye := <-done; !bye {
		t.Fatal("goodbye not seen")
	}
}

// A take with no listener or no record is not kept, and the session goes on.
func TestKeeperRefusesBadTake(t *testing.T) {
	k := newTestKeeper(t)
	h, kc := pair(t)
	done := make(chan bool)
	go func() { done <- k.session(kc) }()
	read(t, h) // end
	for _, m := range []keepMsg{{Op: "take", Token: "x"}, {Op: "take", Token: "y", Record: &mountvet.Record{ID: "c"}}} {
		if err := writeKeep(h, m, -1); err != nil {
			t.Fatal(err)
		}
		if a, _ := read(t, h); a.Op != "ok" {
			t.Fatalf("answer %+v", a)
		}
	}
	if k.count() != 0 {
		t.Fatalf("keeper holds %d listeners from bad takes", k.count())
	}
	h.Close()
	<-done
}

// The views' connection is kept like a listener: given back first to the
// next helper, and let go when a helper says goodbye.
func TestKeeperKeepsViews(t *testing.T) {
	k := newTestKeeper(t)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])

	h, kc := pair(t)
	done := make(chan bool)
	go func() { done <- k.session(kc) }()
	if m, _ := read(t, h); m.Op != "end" {
		t.Fatalf("empty keeper sent %q first, want end", m.Op)
	}
	if err := writeKeep(h, keepMsg{Op: "fuse"}, p[0]); err != nil {
		t.Fatal(err)
	}
	if m, _ := read(t, h); m.Op != "ok" {
		t.Fatalf("fuse answered %+v", m)
	}
	h.Close()
	<-done
	if k.count() != 1 {
		t.Fatalf("keeper holds %d, want the views' connection", k.count())
	}

	h2, kc2 := pair(t)
	go func() { done <- k.session(kc2) }()
	m, fd := read(t, h2)
	if m.Op != "fuse" || fd < 0 {
		t.Fatalf("keeper gave back %+v (fd %d), want the views' connection", m, fd)
	}
	if !sameFile(t, fd, p[0]) {
		t.Fatal("the connection given back is another file")
	}
	if m, _ := read(t, h2); m.Op != "end" {
		t.Fatalf("then came %q, want end", m.Op)
	}
	if err := writeKeep(h2, keepMsg{Op: "bye"}, -1); err != nil {
		t.Fatal(err)
	}
	if bye := <-done; !bye {
		t.Fatal("goodbye not seen")
	}
	if k.count() != 0 {
		t.Fatal("the keeper still holds the views after goodbye")
	}
}

// sameFile reports whether fd, which it closes, is the file of orig.
func sameFile(t *testing.T, fd, orig int) bool {
	t.Helper()
	defer unix.Close(fd)
	var a, b unix.Stat_t
	if err := unix.Fstat(fd, &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fstat(orig, &b); err != nil {
		t.Fatal(err)
	}
	return a.Ino == b.Ino && a.Dev == b.Dev
}
