package procfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// The views are served with the kernel's FUSE protocol spoken directly,
// not through a library: a helper that dies must leave a connection that
// the next helper takes over. So node IDs are derived from what they name
// (see dirNode), INIT is
// answered once per connection, and a new server asks the kernel to send
// again the requests the dead one had read and not answered
// (FUSE_NOTIFY_RESEND, Linux 6.9).

// FUSE opcodes and constants (linux/fuse.h).
const (
	opLookup      = 1
	opForget      = 2
	opGetattr     = 3
	opOpen        = 14
	opRead        = 15
	opStatfs      = 17
	opRelease     = 18
	opFlush       = 25
	opInit        = 26
	opOpendir     = 27
	opReaddir     = 28
	opReleasedir  = 29
	opAccess      = 34
	opInterrupt   = 36
	opDestroy     = 38
	opBatchForget = 42

	rootID       = 1
	fopenDirect  = 1 << 0
	notifyResend = 7
	inHeaderLen  = 40
	outHeaderLen = 16
	// The kernel needs a read buffer of at least 8 KiB and more than the
	// largest write it may send; nothing is written to the views.
	readBuffer = 64 << 10
	// maxInFlight is how many requests are answered at once.
	maxInFlight = 16
	maxWrite    = 4096
	// How long the kernel may keep the root's attributes.
	validSeconds = 1
	// fileSize is the size the files claim. A file of size 0 reads as
	// empty through sendfile and splice (busybox cat uses sendfile), which
	// read up to the size the kernel knows; a larger one is cut at the
	// first short read, which tells the kernel where the file ends. Each
	// open looks the name up again (no entry caching), which resets it.
	fileSize = 1 << 20
)

// Session is one FUSE connection serving views: its /dev/fuse file is
// what must outlive a helper.
type Session struct {
	v   *Views
	dev *os.File
	fd  int // dev's: the device is not closed while Serve runs
	mu  sync.Mutex
	// open files' contents, by handle: what the reader saw at open.
	handles map[uint64][]byte
	next    uint64
	stop    bool
	// dropped is the request a stopped session left unanswered.
	dropped uint32
}

// Mount mounts the views on dir and answers the kernel's INIT; Serve then
// serves them. Every user may read them, the containers' users among
// them.
func (v *Views) Mount(dir string) (*Session, error) {
	dev, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/fuse: %w", err)
	}
	opts := fmt.Sprintf("fd=%d,rootmode=40555,user_id=0,group_id=0,allow_other", dev.Fd())
	if err := unix.Mount("moat", dir, "fuse.moat-views", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		dev.Close()
		return nil, fmt.Errorf("mount the /proc and /sys views on %s: %w", dir, err)
	}
	s := &Session{v: v, dev: dev, fd: int(dev.Fd()), handles: map[uint64][]byte{}}
	if err := s.handshake(); err != nil {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
		dev.Close()
		return nil, err
	}
	return s, nil
}

// Resume serves, on dev, a connection another session started: what the
// kernel sent it and it did not answer is sent again.
func (v *Views) Resume(dev *os.File) (*Session, error) {
	s := &Session{v: v, dev: dev, fd: int(dev.Fd()), handles: map[uint64][]byte{}}
	var h [outHeaderLen]byte
	binary.LittleEndian.PutUint32(h[0:], outHeaderLen)
	binary.LittleEndian.PutUint32(h[4:], notifyResend)
	if _, err := unix.Write(s.fd, h[:]); err != nil {
		return nil, fmt.Errorf("ask the kernel to send the views' pending requests again: %w", err)
	}
	return s, nil
}

// Device is the connection's /dev/fuse file.
func (s *Session) Device() *os.File { return s.dev }

// handshake answers the kernel's first request, INIT.
func (s *Session) handshake() error {
	buf := make([]byte, readBuffer)
	n, err := s.read(buf)
	if err != nil {
		return fmt.Errorf("views: read INIT: %w", err)
	}
	h, body := header(buf[:n])
	if h.opcode != opInit || len(body) < 16 {
		return fmt.Errorf("views: first request is %d, not INIT", h.opcode)
	}
	major := binary.LittleEndian.Uint32(body[0:])
	readahead := binary.LittleEndian.Uint32(body[8:])
	if major != 7 {
		s.reply(h.unique, -int32(syscall.EPROTO), nil)
		return fmt.Errorf("views: FUSE protocol %d, want 7", major)
	}
	out := make([]byte, 64)
	binary.LittleEndian.PutUint32(out[0:], 7)
	binary.LittleEndian.PutUint32(out[4:], 40) // 7.40: resend
	binary.LittleEndian.PutUint32(out[8:], readahead)
	binary.LittleEndian.PutUint16(out[16:], 16) // max_background
	binary.LittleEndian.PutUint16(out[18:], 12) // congestion_threshold
	binary.LittleEndian.PutUint32(out[20:], maxWrite)
	binary.LittleEndian.PutUint32(out[24:], 1) // time_gran
	return s.reply(h.unique, 0, out)
}

func (s *Session) read(buf []byte) (int, error) {
	for {
		n, err := unix.Read(s.fd, buf)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOENT) {
			// ENOENT: the request was interrupted before we read it.
			continue
		}
		return n, err
	}
}

type inHeader struct {
	opcode uint32
	unique uint64
	nodeid uint64
	pid    uint32 // the caller, in the pid namespace of the mounter
}

func header(b []byte) (inHeader, []byte) {
	if len(b) < inHeaderLen {
		return inHeader{}, nil
	}
	return inHeader{
		opcode: binary.LittleEndian.Uint32(b[4:]),
		unique: binary.LittleEndian.Uint64(b[8:]),
		nodeid: binary.LittleEndian.Uint64(b[16:]),
		pid:    binary.LittleEndian.Uint32(b[32:]),
	}, b[inHeaderLen:]
}

// reply answers request unique with errno (negative) or payload.
func (s *Session) reply(unique uint64, errno int32, payload []byte) error {
	out := make([]byte, outHeaderLen+len(payload))
	binary.LittleEndian.PutUint32(out[0:], uint32(len(out)))
	binary.LittleEndian.PutUint32(out[4:], uint32(errno))
	binary.LittleEndian.PutUint64(out[8:], unique)
	copy(out[outHeaderLen:], payload)
	_, err := unix.Write(s.fd, out)
	if errors.Is(err, unix.ENOENT) {
		return nil // the request was interrupted meanwhile
	}
	return err
}

// Serve answers the kernel's requests until the views are unmounted (nil)
// or Stop is called, and returns once no answer is being made: only then
// may the device be closed.
func (s *Session) Serve() error {
	buf := make([]byte, readBuffer)
	inFlight := make(chan struct{}, maxInFlight)
	var answering sync.WaitGroup
	defer answering.Wait()
	for {
		n, err := s.read(buf)
		if errors.Is(err, unix.ENODEV) {
			return nil // unmounted
		}
		if err != nil {
			return fmt.Errorf("views: read a request: %w", err)
		}
		s.mu.Lock()
		stop := s.stop
		s.mu.Unlock()
		h, body := header(buf[:n])
		if stop {
			// Read and left unanswered, as by a helper that died.
			s.mu.Lock()
			s.dropped = h.opcode
			s.mu.Unlock()
			return nil
		}
		if h.opcode != opOpen {
			// Answered from memory: at once, on this thread (a hand-off
			// to another costs more than the answer).
			_ = s.handle(h, body)
			continue
		}
		// An open reads the reader's cgroup files, on a goroutine of its
		// own: a reader whose files are slow holds up no other.
		req := append([]byte(nil), buf[:n]...)
		h, body = header(req)
		inFlight <- struct{}{}
		answering.Add(1)
		go func() {
			defer answering.Done()
			defer func() { <-inFlight }()
			// A reply that cannot be written goes with its reader (the
			// views unmounted, the request interrupted).
			_ = s.handle(h, body)
		}()
	}
}

// Stop makes Serve return after the next request, which it leaves
// unanswered: what a helper that dies leaves behind, for tests.
func (s *Session) Stop() {
	s.mu.Lock()
	s.stop = true
	s.mu.Unlock()
}

// Node IDs name what they are, so that a server that takes over knows
// them: 1 is the root; a container's directory is the hash of the name it
// was looked up by, with the top bit set and the low 4 bits clear; its
// files add their index+1. Each container binds files of its own
// directory, so no two containers share an inode, nor the page cache that
// sendfile reads through.
const dirBit = 1 << 63

func dirNode(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()&^0xf | dirBit
}

// node is what a node ID names.
type node struct {
	root bool
	file int // an index in viewFiles, or -1 for a directory
}

func resolve(nodeid uint64) (node, bool) {
	switch {
	case nodeid == rootID:
		return node{root: true, file: -1}, true
	case nodeid&dirBit == 0:
		return node{}, false
	case nodeid&0xf == 0:
		return node{file: -1}, true
	case int(nodeid&0xf) <= len(viewFiles):
		return node{file: int(nodeid&0xf) - 1}, true
	}
	return node{}, false
}

// validDir reports whether name can name a container's directory: a
// container ID, not a path.
func validDir(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= 255 && !strings.ContainsAny(name, "/\x00")
}

func (s *Session) handle(h inHeader, body []byte) error {
	errno, out := s.answer(h, body)
	switch h.opcode {
	case opForget, opBatchForget, opInterrupt:
		return nil // no answer expected
	}
	return s.reply(h.unique, -int32(errno), out)
}

func (s *Session) answer(h inHeader, body []byte) (syscall.Errno, []byte) {
	switch h.opcode {
	case opForget, opBatchForget, opInterrupt, opAccess:
		return 0, nil
	case opFlush:
		// Nothing to flush: the kernel stops sending it.
		return syscall.ENOSYS, nil
	case opDestroy:
		return 0, nil
	case opStatfs:
		out := make([]byte, 80)
		binary.LittleEndian.PutUint32(out[40:], 4096) // bsize
		binary.LittleEndian.PutUint32(out[44:], 255)  // namelen
		return 0, out
	}
	n, ok := resolve(h.nodeid)
	if !ok {
		return syscall.ENOENT, nil
	}
	file := n.file
	switch h.opcode {
	case opLookup:
		if file >= 0 {
			return syscall.ENOTDIR, nil
		}
		name := string(bytes.TrimRight(body, "\x00"))
		if n.root {
			if !validDir(name) {
				return syscall.ENOENT, nil
			}
			return 0, entryOut(dirNode(name), true)
		}
		for i, f := range viewFiles {
			if f == name {
				return 0, entryOut(h.nodeid|uint64(i+1), false)
			}
		}
		return syscall.ENOENT, nil
	case opGetattr:
		out := make([]byte, 16+88)
		if file < 0 {
			binary.LittleEndian.PutUint64(out[0:], validSeconds)
		}
		putAttr(out[16:], h.nodeid, file < 0)
		return 0, out
	case opOpendir:
		if file >= 0 {
			return syscall.ENOTDIR, nil
		}
		return 0, make([]byte, 16)
	case opReaddir:
		if file >= 0 || len(body) < 24 {
			return syscall.ENOTDIR, nil
		}
		return 0, readdir(h.nodeid, n.root, binary.LittleEndian.Uint64(body[8:]), binary.LittleEndian.Uint32(body[16:]))
	case opReleasedir:
		return 0, nil
	case opOpen:
		if file < 0 {
			return syscall.EISDIR, nil
		}
		if len(body) >= 4 && binary.LittleEndian.Uint32(body[0:])&syscall.O_ACCMODE != syscall.O_RDONLY {
			return syscall.EACCES, nil
		}
		b, err := s.v.File(int(h.pid), viewFiles[file])
		if err != nil {
			return errnoOf(err), nil
		}
		s.mu.Lock()
		s.next++
		fh := s.next
		s.handles[fh] = b
		s.mu.Unlock()
		out := make([]byte, 16)
		binary.LittleEndian.PutUint64(out[0:], fh)
		// Direct I/O: no page cache, every open reads what is now.
		binary.LittleEndian.PutUint32(out[8:], fopenDirect)
		return 0, out
	case opRead:
		if file < 0 || len(body) < 24 {
			return syscall.EISDIR, nil
		}
		fh := binary.LittleEndian.Uint64(body[0:])
		off := binary.LittleEndian.Uint64(body[8:])
		size := uint64(binary.LittleEndian.Uint32(body[16:]))
		s.mu.Lock()
		b, ok := s.handles[fh]
		s.mu.Unlock()
		if !ok {
			// Opened under a helper that died: made again.
			var err error
			if b, err = s.v.File(int(h.pid), viewFiles[file]); err != nil {
				return errnoOf(err), nil
			}
		}
		if off >= uint64(len(b)) {
			return 0, nil
		}
		return 0, b[off:min(off+size, uint64(len(b)))]
	case opRelease:
		if len(body) >= 8 {
			s.mu.Lock()
			delete(s.handles, binary.LittleEndian.Uint64(body[0:]))
			s.mu.Unlock()
		}
		return 0, nil
	}
	return syscall.ENOSYS, nil
}

func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return syscall.EIO
}

func entryOut(nodeid uint64, dir bool) []byte {
	out := make([]byte, 40+88)
	binary.LittleEndian.PutUint64(out[0:], nodeid)
	if dir {
		binary.LittleEndian.PutUint64(out[16:], validSeconds) // entry_valid
		binary.LittleEndian.PutUint64(out[24:], validSeconds) // attr_valid
	}
	// A file's entry_valid and attr_valid are 0: looked up again at every
	// open (see fileSize).
	putAttr(out[40:], nodeid, dir)
	return out
}

// putAttr writes a struct fuse_attr: read-only, root's.
func putAttr(b []byte, nodeid uint64, dir bool) {
	binary.LittleEndian.PutUint64(b[0:], nodeid)
	mode, nlink := uint32(syscall.S_IFREG|0o444), uint32(1)
	if dir {
		mode, nlink = syscall.S_IFDIR|0o555, 2
	} else {
		binary.LittleEndian.PutUint64(b[8:], fileSize)
	}
	binary.LittleEndian.PutUint32(b[60:], mode)
	binary.LittleEndian.PutUint32(b[64:], nlink)
	binary.LittleEndian.PutUint32(b[80:], 4096) // blksize
}

// readdir lists directory nodeid from offset off, in at most size bytes.
// The root lists no container: each knows its own directory's name.
func readdir(nodeid uint64, root bool, off uint64, size uint32) []byte {
	type ent struct {
		ino  uint64
		name string
		dir  bool
	}
	ents := []ent{{nodeid, ".", true}, {rootID, "..", true}}
	if !root {
		for i, f := range viewFiles {
			ents = append(ents, ent{nodeid | uint64(i+1), f, false})
		}
	}
	var out []byte
	for i := off; i < uint64(len(ents)); i++ {
		e := ents[i]
		recLen := (24 + len(e.name) + 7) &^ 7
		if len(out)+recLen > int(size) {
			break
		}
		rec := make([]byte, recLen)
		binary.LittleEndian.PutUint64(rec[0:], e.ino)
		binary.LittleEndian.PutUint64(rec[8:], i+1) // the next entry's offset
		binary.LittleEndian.PutUint32(rec[16:], uint32(len(e.name)))
		typ := uint32(unix.DT_REG)
		if e.dir {
			typ = unix.DT_DIR
		}
		binary.LittleEndian.PutUint32(rec[20:], typ)
		copy(rec[24:], e.name)
		out = append(out, rec...)
	}
	return out
}
