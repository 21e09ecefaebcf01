package mountvet

/*
#include <stdlib.h>
#include "onbehalf.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// caller is the context of one trapped call: the namespaces, root and
// working directory of the thread that made it, opened while the call
// was known to be pending, and its effective capabilities.
type caller struct {
	tid    uint32
	ns     [C.MV_NS_COUNT]*os.File
	root   *os.File
	cwd    *os.File
	capEff uint64
	mntNS  uint64 // inode of its mount namespace
}

var nsNames = [C.MV_NS_COUNT]string{"user", "mnt", "net", "ipc", "uts", "cgroup", "pid"}

// openCaller opens what an on-behalf operation needs of thread tid.
func openCaller(tid uint32) (*caller, error) {
	c := &caller{tid: tid}
	dir := "/proc/" + strconv.FormatUint(uint64(tid), 10)
	var err error
	for i, name := range nsNames {
		if c.ns[i], err = os.Open(dir + "/ns/" + name); err != nil {
			c.Close()
			return nil, err
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(c.ns[C.MV_NS_MNT].Fd()), &st); err != nil {
		c.Close()
		return nil, err
	}
	c.mntNS = st.Ino
	if c.root, err = os.OpenFile(dir+"/root", unix.O_PATH|unix.O_DIRECTORY, 0); err != nil {
		c.Close()
		return nil, err
	}
	if c.cwd, err = os.OpenFile(dir+"/cwd", unix.O_PATH|unix.O_DIRECTORY, 0); err != nil {
		c.Close()
		return nil, err
	}
	if c.capEff, err = capEff(dir + "/status"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *caller) Close() {
	for _, f := range c.ns {
		if f != nil {
			f.Close()
		}
	}
	if c.root != nil {
		c.root.Close()
	}
	if c.cwd != nil {
		c.cwd.Close()
	}
}

// capEff reads a thread's effective capabilities from its status file.
func capEff(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	const key = "\nCapEff:\t"
	i := strings.Index(string(data), key)
	if i < 0 {
		return 0, fmt.Errorf("%s: no CapEff", path)
	}
	rest := string(data[i+len(key):])
	if j := strings.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	return strconv.ParseUint(rest, 16, 64)
}

const (
	opProbe       = C.MV_PROBE
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
	op                      int
	source, target          string
	fstype, data            *string
	flags                   uintptr
	attrSet, attrClr        uint64
	noFollow, wantSource    bool
	recursive, inPidNS      bool
	expectTarget, expectSrc uint64
	steps                   []step // opNewFS
}

// step is one mount of a new filesystem's masks (struct mv_step): a clone
// of src as the caller sees it, or of self inside the new filesystem,
// mounted at dst inside it.
type step struct {
	src, self, dst string
	attr           uint64
}

// result is what the child found and how the operation ended.
type result struct {
	errno               unix.Errno
	stage               int
	target, source      uint64 // mount ids
	targetRoot, srcRoot bool
	newMount            uint64
}

var stageNames = map[int]string{
	C.MV_STAGE_CLONE: "clone", C.MV_STAGE_SETNS: "join namespaces", C.MV_STAGE_IDS: "take ids",
	C.MV_STAGE_CAPS: "take capabilities", C.MV_STAGE_ROOT: "take root", C.MV_STAGE_TARGET: "resolve target",
	C.MV_STAGE_SOURCE: "resolve source", C.MV_STAGE_STALE: "target changed", C.MV_STAGE_OP: "operation",
}

func (r result) String() string {
	if r.stage == C.MV_OK {
		return "ok"
	}
	return fmt.Sprintf("%s: %v", stageNames[r.stage], r.errno)
}

// run carries out q for c in a child that joins c's namespaces.
func (c *caller) run(q request) result {
	var r C.struct_mv_req
	for i := range c.ns {
		r.ns[i] = -1
	}
	// The user and mount namespaces always; the others only where a new
	// filesystem takes them from its mounter (sysfs, mqueue, cgroup, proc).
	r.ns[C.MV_NS_USER] = C.int(c.ns[C.MV_NS_USER].Fd())
	r.ns[C.MV_NS_MNT] = C.int(c.ns[C.MV_NS_MNT].Fd())
	if q.op == C.MV_NEW || q.op == C.MV_NEWFS {
		for _, i := range []int{C.MV_NS_NET, C.MV_NS_IPC, C.MV_NS_UTS, C.MV_NS_CGROUP} {
			r.ns[i] = C.int(c.ns[i].Fd())
		}
		if q.inPidNS {
			r.ns[C.MV_NS_PID] = C.int(c.ns[C.MV_NS_PID].Fd())
		}
	}
	r.rootfd = C.int(c.root.Fd())
	r.cwdfd = C.int(c.cwd.Fd())
	r.capeff = C.ulonglong(c.capEff)
	r.op = C.int(q.op)
	var frees []unsafe.Pointer
	cstr := func(s string) *C.char {
		p := C.CString(s)
		frees = append(frees, unsafe.Pointer(p))
		return p
	}
	if q.source != "" {
		r.source = cstr(q.source)
	}
	if q.target != "" {
		r.target = cstr(q.target)
	}
	if q.fstype != nil {
		r.fstype = cstr(*q.fstype)
	}
	if q.data != nil {
		r.data = cstr(*q.data)
	}
	r.flags = C.ulong(q.flags)
	r.attr_set = C.ulonglong(q.attrSet)
	r.attr_clr = C.ulonglong(q.attrClr)
	r.nofollow = cbool(q.noFollow)
	r.want_source = cbool(q.wantSource)
	r.recursive = cbool(q.recursive)
	r.expect_tmnt = C.ulonglong(q.expectTarget)
	r.expect_smnt = C.ulonglong(q.expectSrc)
	if len(q.steps) > 0 {
		steps := (*[1 << 20]C.struct_mv_step)(C.calloc(C.size_t(len(q.steps)), C.size_t(unsafe.Sizeof(C.struct_mv_step{}))))[:len(q.steps):len(q.steps)]
		frees = append(frees, unsafe.Pointer(&steps[0]))
		for i, st := range q.steps {
			if st.src != "" {
				steps[i].src = cstr(st.src)
			} else {
				steps[i].self = cstr(st.self)
			}
			steps[i].dst = cstr(st.dst)
			steps[i].attr = C.ulonglong(st.attr)
		}
		r.steps = &steps[0]
		r.nsteps = C.int(len(q.steps))
	}

	// The child's fds are this thread's: keep it the same OS thread.
	runtime.LockOSThread()
	C.mv_run(&r)
	runtime.UnlockOSThread()
	runtime.KeepAlive(c)
	for _, p := range frees {
		C.free(p)
	}
	return result{
		errno: unix.Errno(r.err), stage: int(r.stage),
		target: uint64(r.tmnt), source: uint64(r.smnt),
		targetRoot: r.troot != 0, srcRoot: r.sroot != 0,
		newMount: uint64(r.newmnt),
	}
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}
