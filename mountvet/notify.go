package mountvet

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
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
// in the memory of thread tid. A string that does not end within max
// fails with ENAMETOOLONG, as the kernel's own copy would.
func readString(mem *os.File, addr uint64, max int) (string, error) {
	buf := make([]byte, 0, 256)
	chunk := make([]byte, 256)
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

// openMem opens the memory of thread tid for reading its arguments.
func openMem(tid uint32) (*os.File, error) {
	f, err := os.Open("/proc/" + strconv.FormatUint(uint64(tid), 10) + "/mem")
	if err != nil {
		return nil, fmt.Errorf("open memory of %d: %w", tid, err)
	}
	return f, nil
}
