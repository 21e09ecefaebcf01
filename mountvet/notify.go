package mountvet

import (
	"bytes"
	"errors"
	"io"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Notif is one trapped call, as the kernel reports it (struct seccomp_notif).
type Notif struct {
	ID    uint64
	Pid   uint32 // the calling thread, in the helper's pid namespace
	Flags uint32
	Nr    int32
	Arch  uint32
	IP    uint64
	Args  [6]uint64
}

// notifResp is struct seccomp_notif_resp.
type notifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// Recv takes the next trapped call from a listener. It blocks; call it
// when the listener polls readable.
func Recv(fd int) (*Notif, error) {
	var n Notif
	if err := ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(&n)); err != nil {
		return nil, err
	}
	return &n, nil
}

// Respond answers a trapped call: errno 0 makes it return 0, anything
// else makes it fail with that errno. moat never lets a call continue to
// the kernel: it has already done what was allowed.
func Respond(fd int, id uint64, errno unix.Errno) error {
	r := notifResp{ID: id, Error: -int32(errno)}
	err := ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&r))
	if errors.Is(err, unix.ENOENT) {
		return nil // the caller was killed meanwhile
	}
	return err
}

// Valid reports whether the call id still waits: the thread that made it
// has not died and been replaced by another with its number.
func Valid(fd int, id uint64) bool {
	return ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id)) == nil
}

func ioctl(fd int, req uint, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

// readString reads a NUL-terminated string of at most max bytes at addr
// in mem. A string that does not end within max fails with ENAMETOOLONG,
// as the kernel's own copy would.
func readString(mem io.ReaderAt, addr uint64, max int) (string, error) {
	var buf []byte
	chunk := make([]byte, 4096)
	for len(buf) < max {
		// Stop each read at a page end: the next page may be unmapped.
		n := min(len(chunk), 4096-int((addr+uint64(len(buf)))%4096), max-len(buf))
		got, err := mem.ReadAt(chunk[:n], int64(addr)+int64(len(buf)))
		if got == 0 && err != nil {
			return "", unix.EFAULT
		}
		if i := bytes.IndexByte(chunk[:got], 0); i >= 0 {
			return string(append(buf, chunk[:i]...)), nil
		}
		buf = append(buf, chunk[:got]...)
	}
	return "", unix.ENAMETOOLONG
}

// procMem is the memory of a thread, read with process_vm_readv(2): one
// system call per read, where /proc/<tid>/mem costs an open and a close
// as well.
type procMem int

func (tid procMem) ReadAt(p []byte, off int64) (int, error) {
	local := []unix.Iovec{{Base: &p[0]}}
	local[0].SetLen(len(p))
	remote := []unix.RemoteIovec{{Base: uintptr(off), Len: len(p)}}
	n, err := unix.ProcessVMReadv(int(tid), local, remote, 0)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// argMem serves reads of a thread's memory from what was read ahead, in
// one system call, of the pages its call's arguments start on; other
// reads go to the thread.
type argMem struct {
	tid   procMem
	spans []span
}

type span struct {
	addr uint64
	data []byte
}

// readAhead reads, for each non-zero address, up to the end of its page.
func readAhead(tid procMem, addrs ...uint64) *argMem {
	m := &argMem{tid: tid}
	var local []unix.Iovec
	var remote []unix.RemoteIovec
	for _, a := range addrs {
		if a == 0 {
			continue
		}
		data := make([]byte, 4096-int(a%4096))
		m.spans = append(m.spans, span{addr: a, data: data})
		iov := unix.Iovec{Base: &data[0]}
		iov.SetLen(len(data))
		local = append(local, iov)
		remote = append(remote, unix.RemoteIovec{Base: uintptr(a), Len: len(data)})
	}
	if len(local) == 0 {
		return m
	}
	got, err := unix.ProcessVMReadv(int(tid), local, remote, 0)
	if err != nil {
		got = 0
	}
	// The kernel stops at the first range it cannot read.
	for i := range m.spans {
		n := min(got, len(m.spans[i].data))
		m.spans[i].data = m.spans[i].data[:n]
		got -= n
	}
	return m
}

func (m *argMem) ReadAt(p []byte, off int64) (int, error) {
	start, end := uint64(off), uint64(off)+uint64(len(p))
	for _, s := range m.spans {
		if start >= s.addr && end <= s.addr+uint64(len(s.data)) {
			return copy(p, s.data[start-s.addr:]), nil
		}
	}
	return m.tid.ReadAt(p, off)
}
