package mountvet

/*
#cgo CFLAGS: -fno-stack-protector
#include <stdlib.h>
#include "onbehalf.h"
*/
import "C"

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// caller is the context of one trapped call: the namespaces, root and
// working directory of the thread that made it, opened while the call
// was known to be pending, and its effective capabilities.
type caller struct {
	tid           uint32
	userNS, mntNS uint64 // inodes of its namespaces
	root, cwd     int    // cwd is -1 when no path of the call is relative
	ns            [C.MV_NS_COUNT]int
	capEff        uint64
}

var nsNames = [C.MV_NS_COUNT]string{"user", "mnt", "net", "ipc", "cgroup", "pid"}

const (
	nsUser   = C.MV_NS_USER
	nsMnt    = C.MV_NS_MNT
	nsNet    = C.MV_NS_NET
	nsIPC    = C.MV_NS_IPC
	nsCgroup = C.MV_NS_CGROUP
	nsPID    = C.MV_NS_PID
)

func (c *caller) dir() string {
	return "/proc/" + strconv.FormatUint(uint64(c.tid), 10)
}

// openCaller opens the root of thread tid, its working directory if k
// has a relative path, and reads its capabilities and which user and
// mount namespaces it is in.
func openCaller(tid uint32, k *call) (*caller, error) {
	c := &caller{tid: tid, root: -1, cwd: -1}
	for i := range c.ns {
		c.ns[i] = -1
	}
	dir := c.dir()
	var st unix.Stat_t
	if err := unix.Stat(dir+"/ns/user", &st); err != nil {
		return nil, err
	}
	c.userNS = st.Ino
	if err := unix.Stat(dir+"/ns/mnt", &st); err != nil {
		return nil, err
	}
	c.mntNS = st.Ino
	var err error
	if c.root, err = unix.Open(dir+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		return nil, err
	}
	if k.relative() {
		if c.cwd, err = unix.Open(dir+"/cwd", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			c.Close()
			return nil, err
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3, Pid: int32(tid)}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		c.Close()
		return nil, err
	}
	c.capEff = uint64(data[0].Effective) | uint64(data[1].Effective)<<32
	return c, nil
}

// openNS opens the caller's namespace i, once.
func (c *caller) openNS(i int) error {
	if c.ns[i] >= 0 {
		return nil
	}
	fd, err := unix.Open(c.dir()+"/ns/"+nsNames[i], unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	c.ns[i] = fd
	return nil
}

func (c *caller) Close() {
	for _, fd := range append(c.ns[:], c.root, c.cwd) {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// relative reports whether a path of k is resolved from the caller's
// working directory.
func (k *call) relative() bool {
	rel := func(p *string) bool { return p != nil && !strings.HasPrefix(*p, "/") }
	if rel(k.target) {
		return true
	}
	return !k.umount && k.flags&(unix.MS_BIND|unix.MS_MOVE) != 0 && rel(k.source)
}

const (
	opNew         = C.MV_NEW
	opRemount     = C.MV_REMOUNT
	opSetattr     = C.MV_SETATTR
	opPropagation = C.MV_PROPAGATION
	opBind        = C.MV_BIND
	opMove        = C.MV_MOVE
	opUmount      = C.MV_UMOUNT
	opNewFS       = C.MV_NEWFS

	stageTarget = C.MV_STAGE_TARGET
	stageSource = C.MV_STAGE_SOURCE
	stageOp     = C.MV_STAGE_OP
)

// request is one on-behalf operation (struct mv_req).
type request struct {
	op                   int
	source, target       string
	fstype, data         *string
	flags                uintptr
	attrSet, attrClr     uint64
	noFollow, wantSource bool
	recursive            bool
	// hold stops the worker once the paths are resolved, until the
	// helper has decided on what they resolved to.
	hold  bool
	steps []step // opNewFS
}

// step is one mount of a new filesystem's masks (struct mv_step): a clone
// of src as the caller sees it, or of self inside the new filesystem,
// mounted at dst inside it.
type step struct {
	src, self, dst string
	attr           uint64
}

// result is what the worker found and how the operation ended.
type result struct {
	errno                    unix.Errno
	stage                    int
	target, source, newMount mount
}

// mount is a mount a path resolved to, or one a call made.
type mount struct {
	id   int
	root bool            // the path is the mount's root
	info *mountinfo.Info // nil when the kernel has no statmount(2)
}

var stageNames = map[int]string{
	C.MV_STAGE_CLONE: "clone", C.MV_STAGE_SETNS: "join namespaces",
	C.MV_STAGE_CAPS: "take capabilities", C.MV_STAGE_ROOT: "take root", C.MV_STAGE_TARGET: "resolve target",
	C.MV_STAGE_SOURCE: "resolve source", C.MV_STAGE_OP: "operation",
	C.MV_STAGE_WORKER: "worker",
}

func (r result) String() string {
	if r.stage == C.MV_OK {
		return "ok"
	}
	return fmt.Sprintf("%s: %v", stageNames[r.stage], r.errno)
}

// worker is a process in one user namespace of a container that carries
// out the container's calls in that namespace (onbehalf.c). It costs a
// wake-up per call where a process per call would cost a clone.
type worker struct {
	w             *C.struct_mv_worker
	userNS, mntNS uint64 // where it lives
	used          uint64 // the container's call count when last used
	frees         []unsafe.Pointer
}

// startWorker starts a worker in the user namespace userFD and the mount
// namespace mntFD (inodes userNS and mntNS).
func startWorker(userFD, mntFD int, userNS, mntNS uint64) (*worker, error) {
	home, err := unix.FcntlInt(uintptr(mntFD), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	w := &worker{w: (*C.struct_mv_worker)(C.calloc(1, C.size_t(unsafe.Sizeof(C.struct_mv_worker{})))), userNS: userNS, mntNS: mntNS}
	w.w.pidfd = -1
	w.w.helper = C.int(os.Getpid())
	w.w.userfd = C.int(userFD)
	w.w.mntfd = C.int(home)
	if e := C.mv_worker_start(w.w); e != 0 {
		unix.Close(home)
		C.free(unsafe.Pointer(w.w))
		return nil, fmt.Errorf("start worker: %w", unix.Errno(e))
	}
	return w, nil
}

// stop ends the worker; it must be idle.
func (w *worker) stop() {
	C.mv_worker_stop(w.w)
	unix.Close(int(w.w.mntfd))
	C.free(unsafe.Pointer(w.w))
	w.w = nil
}

// call hands q, for caller c, to the worker. Without q.hold it returns
// once q is done. With q.hold it returns once the paths are resolved, and
// then, if the resolution succeeded (held is true), verdict must follow.
func (w *worker) call(c *caller, q request) (r result, held bool) {
	req := &w.w.req
	// Every input is set below; the worker resets the results. (Zeroing
	// the whole request would clear its large path buffers on each call.)
	req.source, req.target, req.fstype, req.data = nil, nil, nil, nil
	req.steps, req.nsteps = nil, 0
	for i := range req.ns {
		req.ns[i] = C.int(c.ns[i])
	}
	// The worker is where it lives between calls: it joins the caller's
	// user namespace never, its mount namespace only if it is another.
	req.ns[nsUser] = -1
	if c.mntNS == w.mntNS {
		req.ns[nsMnt] = -1
	}
	req.rootfd = C.int(c.root)
	req.cwdfd = C.int(c.cwd)
	req.capeff = C.ulonglong(c.capEff)
	req.op = C.int(q.op)
	req.hold = cbool(q.hold)
	cstr := func(s string) *C.char {
		p := C.CString(s)
		w.frees = append(w.frees, unsafe.Pointer(p))
		return p
	}
	if q.source != "" {
		req.source = cstr(q.source)
	}
	if q.target != "" {
		req.target = cstr(q.target)
	}
	if q.fstype != nil {
		req.fstype = cstr(*q.fstype)
	}
	if q.data != nil {
		req.data = cstr(*q.data)
	}
	req.flags = C.ulong(q.flags)
	req.attr_set = C.ulonglong(q.attrSet)
	req.attr_clr = C.ulonglong(q.attrClr)
	req.nofollow = cbool(q.noFollow)
	req.want_source = cbool(q.wantSource)
	req.recursive = cbool(q.recursive)
	if len(q.steps) > 0 {
		steps := unsafe.Slice((*C.struct_mv_step)(C.calloc(C.size_t(len(q.steps)), C.size_t(unsafe.Sizeof(C.struct_mv_step{})))), len(q.steps))
		w.frees = append(w.frees, unsafe.Pointer(&steps[0]))
		for i, st := range q.steps {
			if st.src != "" {
				steps[i].src = cstr(st.src)
			} else {
				steps[i].self = cstr(st.self)
			}
			steps[i].dst = cstr(st.dst)
			steps[i].attr = C.ulonglong(st.attr)
		}
		req.steps = &steps[0]
		req.nsteps = C.int(len(q.steps))
	}
	s := w.state()
	if s == C.MV_IDLE || s == C.MV_DONE {
		s = w.hand(s, C.MV_REQ, spinFor)
	}
	switch s {
	case C.MV_HELD:
		return w.result(), true
	case C.MV_DONE:
		w.release()
		return w.result(), false
	}
	w.release()
	return result{errno: unix.EPERM, stage: C.MV_STAGE_WORKER}, false
}

// verdict lets a held call go on or not, and returns how it ended.
func (w *worker) verdict(proceed bool) result {
	defer w.release()
	to := int32(C.MV_ABORT)
	if proceed {
		to = C.MV_GO
	}
	// An unmount waits for the kernel's RCU grace period, which a
	// spinning thread only makes longer.
	spin := spinFor
	if w.w.req.op == opUmount {
		spin = 0
	}
	s := w.hand(C.MV_HELD, to, spin)
	if s != C.MV_DONE {
		return result{errno: unix.EPERM, stage: C.MV_STAGE_WORKER}
	}
	return w.result()
}

// gone reports whether the worker has died.
func (w *worker) gone() bool {
	return w.state() == C.MV_GONE
}

func (w *worker) state() int32 {
	return atomic.LoadInt32((*int32)(unsafe.Pointer(&w.w.state)))
}

// spinFor is how long a wait for the worker spins before it sleeps: a
// call takes the worker tens of microseconds, about what waking up a
// sleeping thread costs on a virtual machine. The spin is in Go, not in
// C: a cgo call that lasts loses its P to another thread.
const spinFor = 30 * time.Microsecond

// hand moves the worker from state from to to, and waits until the worker
// moves it on.
func (w *worker) hand(from, to int32, spinFor time.Duration) int32 {
	if s := C.mv_worker_post(w.w, C.int(from), C.int(to)); s != 0 {
		return int32(s)
	}
	p := (*int32)(unsafe.Pointer(&w.w.state))
	deadline := time.Now().Add(spinFor)
	for i := 1; ; i++ {
		if s := atomic.LoadInt32(p); s != to {
			return s
		}
		if i%64 == 0 && time.Now().After(deadline) {
			break
		}
	}
	return int32(C.mv_worker_wait(w.w, C.int(to)))
}

func (w *worker) release() {
	for _, p := range w.frees {
		C.free(p)
	}
	w.frees = w.frees[:0]
}

func (w *worker) result() result {
	req := &w.w.req
	return result{
		errno: unix.Errno(req.err), stage: int(req.stage),
		target: mountOf(&req.tm), source: mountOf(&req.sm), newMount: mountOf(&req.nm),
	}
}

// mountOf reads what the worker found of a mount into a mountinfo entry,
// as /proc/<pid>/mountinfo would show it to the caller.
func mountOf(m *C.struct_mv_mount) mount {
	out := mount{id: int(m.id), root: m.root != 0}
	if m.have == 0 {
		return out
	}
	str := func(off C.int) string {
		if off < 0 || int(off) >= len(m.buf) {
			return ""
		}
		return C.GoString(&m.buf[off])
	}
	opts := "rw"
	if m.attr&unix.MOUNT_ATTR_RDONLY != 0 {
		opts = "ro"
	}
	for _, a := range []struct {
		attr uint64
		name string
	}{{unix.MOUNT_ATTR_NOSUID, "nosuid"}, {unix.MOUNT_ATTR_NODEV, "nodev"}, {unix.MOUNT_ATTR_NOEXEC, "noexec"}} {
		if uint64(m.attr)&a.attr != 0 {
			opts += "," + a.name
		}
	}
	out.info = &mountinfo.Info{
		ID: int(m.id), Parent: int(m.parent), Major: int(m.major), Minor: int(m.minor),
		Root: str(m.rootoff), Mountpoint: str(m.pointoff), Options: opts,
	}
	return out
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}
