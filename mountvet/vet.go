package mountvet

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/policy"
)

// Flags a mount of the container's may not lose once it has them: a
// read-only mount stays read-only, nosuid, nodev and noexec stay set.
type lock uintptr

const lockable = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// mountRef names a mount by what survives copies into other mount
// namespaces and binds: its filesystem and the directory of it that the
// mount shows.
type mountRef struct {
	dev  string // major:minor
	root string
}

type known struct {
	ref   mountRef
	locks lock
}

// Container is what the helper keeps of one container's mounts. Its
// methods take one vetted call at a time: a decision holds until the call
// has been carried out.
type Container struct {
	mu sync.Mutex
	ID string
	// initial are the mounts present when the container's init was handed
	// over, by mount id. None of them may be unmounted or moved, and none
	// may lose a lockable flag; nor may their copies and binds.
	initial map[int]known
	// own are mounts made by vetted calls: the container's, to unmount at
	// will, with the locks they inherited from what they bind.
	own map[int]known
	// guards are the masks and read-only paths moat put on a proc or
	// sysfs the container mounted: protected as initial mounts are, in
	// the mount namespace they were made in.
	guards map[int]guard
	// views are how the container's proc and sysfs look, for new ones.
	views map[string]FSView
	// gen counts changes to the record, for the helper's copy of it.
	gen uint64
	// workers carry out the calls, one per user namespace they come
	// from; calls counts the calls, to find the least recently used.
	workers map[uint64]*worker
	calls   uint64
}

type guard struct {
	known
	ns uint64 // inode of its mount namespace
}

// NewContainer records the mounts of the container whose init is pid.
func NewContainer(id string, pid int) (*Container, error) {
	ms, err := readMounts(pid)
	if err != nil {
		return nil, fmt.Errorf("mounts of %s: %w", id, err)
	}
	c := &Container{ID: id, initial: map[int]known{}, own: map[int]known{}, guards: map[int]guard{}, views: viewsOf(ms), workers: map[uint64]*worker{}}
	for _, m := range ms {
		c.initial[m.ID] = known{ref: refOf(m), locks: flagsOf(m.Options)}
	}
	return c, nil
}

func readMounts(pid int) ([]*mountinfo.Info, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return mountinfo.GetMountsFromReader(f, nil)
}

func refOf(m *mountinfo.Info) mountRef {
	return mountRef{dev: fmt.Sprintf("%d:%d", m.Major, m.Minor), root: m.Root}
}

// flagsOf returns the lockable flags among a mount's per-mount options.
func flagsOf(opts string) lock {
	var l lock
	for _, o := range strings.Split(opts, ",") {
		switch o {
		case "ro":
			l |= unix.MS_RDONLY
		case "nosuid":
			l |= unix.MS_NOSUID
		case "nodev":
			l |= unix.MS_NODEV
		case "noexec":
			l |= unix.MS_NOEXEC
		}
	}
	return l
}

// locksOf returns the flags mount m may not lose: those of the initial or
// own mount it is, or else of every initial or own mount that shows the
// same files (m is a copy or bind of it).
func (c *Container) locksOf(m *mountinfo.Info) lock {
	ref := refOf(m)
	if k, ok := c.own[m.ID]; ok && k.ref == ref {
		return k.locks
	}
	if k, ok := c.initial[m.ID]; ok && k.ref == ref {
		return k.locks
	}
	if g, ok := c.guards[m.ID]; ok && g.ref == ref {
		return g.locks
	}
	var l lock
	match := func(k known) {
		if k.ref.dev == ref.dev && policy.PathWithin(ref.root, k.ref.root) {
			l |= k.locks
		}
	}
	for _, set := range []map[int]known{c.initial, c.own} {
		for _, k := range set {
			match(k)
		}
	}
	for _, g := range c.guards {
		match(g.known)
	}
	return l
}

// protected reports whether m is an initial mount, or a copy of one in
// another mount namespace, rather than a mount of the container's own.
func (c *Container) protected(m *mountinfo.Info) bool {
	ref := refOf(m)
	if k, ok := c.own[m.ID]; ok && k.ref == ref {
		return false
	}
	if k, ok := c.initial[m.ID]; ok && k.ref == ref {
		return true
	}
	if g, ok := c.guards[m.ID]; ok && g.ref == ref {
		return true
	}
	for _, k := range c.initial {
		if k.ref == ref {
			return true
		}
	}
	return false
}

// call is a trapped mount or umount with its arguments copied out of the
// caller's memory: decisions use these copies, never the caller's memory.
type call struct {
	umount                 bool
	source, target, fstype *string
	data                   *string
	flags                  uintptr
}

const (
	nrMount64   = 165
	nrUmount64  = 166
	nrMount32   = 21
	nrUmount32  = 22
	nrUmount32b = 52
	x32Bit      = 0x40000000
)

// readCall copies the trapped call's arguments.
func readCall(n *Notif) (*call, error) {
	var isMount, oldUmount bool
	switch n.Arch {
	case unix.AUDIT_ARCH_X86_64:
		switch n.Nr &^ x32Bit {
		case nrMount64:
			isMount = true
		case nrUmount64:
		default:
			return nil, unix.ENOSYS
		}
	case unix.AUDIT_ARCH_I386:
		switch n.Nr {
		case nrMount32:
			isMount = true
		case nrUmount32:
			oldUmount = true
		case nrUmount32b:
		default:
			return nil, unix.ENOSYS
		}
	default:
		return nil, unix.ENOSYS
	}
	var mem io.ReaderAt
	if isMount {
		mem = readAhead(procMem(n.Pid), n.Args[0], n.Args[1], n.Args[2], n.Args[4])
	} else {
		mem = procMem(n.Pid)
	}
	var err error
	str := func(addr uint64, max int) (*string, error) {
		if addr == 0 {
			return nil, nil
		}
		s, err := readString(mem, addr, max)
		if err != nil {
			return nil, err
		}
		return &s, nil
	}
	c := &call{umount: !isMount}
	targetArg := 0 // umount2(target, flags)
	if isMount {
		targetArg = 1 // mount(source, target, ...)
	}
	if c.target, err = str(n.Args[targetArg], unix.PathMax); err != nil {
		return nil, err
	}
	if c.target == nil {
		return nil, unix.EFAULT
	}
	if !isMount {
		if !oldUmount {
			c.flags = uintptr(n.Args[1])
		}
		return c, nil
	}
	if c.source, err = str(n.Args[0], unix.PathMax); err != nil {
		return nil, err
	}
	if c.fstype, err = str(n.Args[2], unix.PathMax); err != nil {
		return nil, err
	}
	c.flags = uintptr(n.Args[3])
	if c.flags&unix.MS_MGC_MSK == unix.MS_MGC_VAL {
		c.flags &^= unix.MS_MGC_MSK
	}
	if c.data, err = str(n.Args[4], 4096); errors.Is(err, unix.ENAMETOOLONG) {
		return nil, unix.EINVAL // binary mount data is not supported
	} else if err != nil {
		return nil, err
	}
	return c, nil
}

const capSysAdmin = 21

// maxWorkers bounds the workers of one container: one per user namespace
// its calls come from, the least recently used stopped first.
const maxWorkers = 4

// Handle vets one trapped call from listener and carries it out when it
// is allowed. It returns the errno the caller sees (0 for success) and,
// for the log, why.
func (c *Container) Handle(listener int, n *Notif) (unix.Errno, string) {
	k, err := readCall(n)
	if err != nil {
		return errnoOf(err), "read arguments: " + err.Error()
	}
	cl, err := openCaller(n.Pid, k)
	if err != nil {
		return errnoOf(err), fmt.Sprintf("open caller %d: %v", n.Pid, err)
	}
	defer cl.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.workers[cl.userNS]
	if w != nil && w.gone() {
		c.stopWorker(w)
		w = nil
	}
	if err := cl.openNamespaces(k, w); err != nil {
		return errnoOf(err), fmt.Sprintf("open namespaces of %d: %v", n.Pid, err)
	}
	// What was read and opened above is the caller's only if its call
	// still pends now.
	if !Valid(listener, n.ID) {
		return unix.EPERM, "caller gone"
	}
	if cl.capEff&(1<<capSysAdmin) == 0 {
		return unix.EPERM, "no CAP_SYS_ADMIN"
	}
	if w == nil {
		if w, err = c.startWorker(cl); err != nil {
			return unix.EPERM, err.Error()
		}
	}
	c.calls++
	w.used = c.calls
	var e unix.Errno
	var why string
	if k.umount {
		e, why = c.umount(w, cl, k)
	} else {
		e, why = c.mount(w, cl, k)
	}
	return e, k.String() + ": " + why
}

// openNamespaces opens the caller's namespaces that the worker w (nil:
// none yet for its user namespace) must join for k.
func (cl *caller) openNamespaces(k *call, w *worker) error {
	need := []int{}
	if w == nil {
		need = append(need, nsUser, nsMnt)
	} else if cl.mntNS != w.mntNS {
		need = append(need, nsMnt)
	}
	if k.isNew() {
		need = append(need, nsOfFS(*k.fstype)...)
	}
	for _, i := range need {
		if err := cl.openNS(i); err != nil {
			return err
		}
	}
	return nil
}

// nsOfFS are the namespaces besides user and mount that a new filesystem
// of type fstype takes from whoever mounts it.
func nsOfFS(fstype string) []int {
	switch {
	case fstype == "sysfs":
		return []int{nsNet}
	case fstype == "mqueue":
		return []int{nsIPC}
	case fstype == "cgroup" || fstype == "cgroup2":
		return []int{nsCgroup}
	case fstype == "proc" || fstype == "fuse" || fstype == "fuseblk" || strings.HasPrefix(fstype, "fuse."):
		return []int{nsPID}
	}
	return nil
}

func (c *Container) startWorker(cl *caller) (*worker, error) {
	if len(c.workers) >= maxWorkers {
		var old *worker
		for _, w := range c.workers {
			if old == nil || w.used < old.used {
				old = w
			}
		}
		c.stopWorker(old)
	}
	w, err := startWorker(cl.ns[nsUser], cl.ns[nsMnt], cl.userNS, cl.mntNS)
	if err != nil {
		return nil, fmt.Errorf("act in the namespaces of %d: %w", cl.tid, err)
	}
	c.workers[cl.userNS] = w
	return w, nil
}

func (c *Container) stopWorker(w *worker) {
	delete(c.workers, w.userNS)
	w.stop()
}

// Close stops what serves the container's calls; it has none left.
func (c *Container) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.workers {
		c.stopWorker(w)
	}
}

// errnoOf is the errno the caller sees for err: its own if it is one,
// EPERM otherwise.
func errnoOf(err error) unix.Errno {
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	return unix.EPERM
}

func (k *call) String() string {
	if k.umount {
		return fmt.Sprintf("umount2(%q, %#x)", *k.target, k.flags)
	}
	return fmt.Sprintf("mount(%s, %q, %s, %#x, %s)", quote(k.source), *k.target, quote(k.fstype), k.flags, quote(k.data))
}

// isNew reports whether k mounts a new filesystem.
func (k *call) isNew() bool {
	const other = unix.MS_REMOUNT | unix.MS_BIND | unix.MS_MOVE | unix.MS_SHARED | unix.MS_PRIVATE | unix.MS_SLAVE | unix.MS_UNBINDABLE
	return !k.umount && k.flags&other == 0 && k.fstype != nil
}

func quote(s *string) string {
	if s == nil {
		return "NULL"
	}
	return strconv.Quote(*s)
}

func (c *Container) table(cl *caller) (map[int]*mountinfo.Info, error) {
	ms, err := readMounts(int(cl.tid))
	if err != nil {
		return nil, err
	}
	t := make(map[int]*mountinfo.Info, len(ms))
	for _, m := range ms {
		t[m.ID] = m
	}
	return t, nil
}

// resolve has the worker resolve q's paths as the caller would, and hold
// q there; it returns the mounts they resolved to. Unless it fails, the
// worker waits for a verdict.
func (c *Container) resolve(w *worker, cl *caller, q request) (result, unix.Errno, string) {
	q.hold = true
	r, held := w.call(cl, q)
	if !held {
		e, why := r.outcome()
		if e == 0 {
			e = unix.EPERM
		}
		return r, e, why
	}
	if r.target.info != nil && (!q.wantSource || r.source.info != nil) {
		return r, 0, ""
	}
	// Without statmount(2), the caller's mount table tells the rest.
	t, err := c.table(cl)
	if err != nil {
		w.verdict(false)
		return r, unix.EPERM, "mount table: " + err.Error()
	}
	r.target.info, r.source.info = t[r.target.id], t[r.source.id]
	if r.target.info == nil || (q.wantSource && r.source.info == nil) {
		w.verdict(false)
		return r, unix.EPERM, "resolved mount not in the caller's table"
	}
	return r, 0, ""
}

// resolveMountPoint is resolve for calls whose target must be the root of
// a mount, as the kernel requires of remount and umount; it returns that
// mount.
func (c *Container) resolveMountPoint(w *worker, cl *caller, q request) (*mountinfo.Info, unix.Errno, string) {
	r, e, why := c.resolve(w, cl, q)
	if e != 0 {
		return nil, e, why
	}
	if !r.target.root {
		e, why = refuse(w, unix.EINVAL, "not a mount point")
		return nil, e, why
	}
	return r.target.info, 0, ""
}

// refuse ends a held call without carrying it out.
func refuse(w *worker, e unix.Errno, why string) (unix.Errno, string) {
	w.verdict(false)
	return e, why
}

// outcome is the errno the caller sees for r, and why.
func (r result) outcome() (unix.Errno, string) {
	switch r.stage {
	case 0:
		return 0, "done"
	case stageTarget, stageSource, stageOp:
		return r.errno, r.String()
	}
	return unix.EPERM, r.String()
}

func (c *Container) umount(w *worker, cl *caller, k *call) (unix.Errno, string) {
	if k.flags&^(unix.MNT_FORCE|unix.MNT_DETACH|unix.MNT_EXPIRE|unix.UMOUNT_NOFOLLOW) != 0 {
		return unix.EINVAL, "unknown umount flags"
	}
	q := request{op: opUmount, target: *k.target, flags: k.flags, noFollow: k.flags&unix.UMOUNT_NOFOLLOW != 0}
	m, e, why := c.resolveMountPoint(w, cl, q)
	if e != 0 {
		return e, why
	}
	if c.protected(m) {
		return refuse(w, unix.EPERM, "protected mount "+m.Mountpoint)
	}
	e, why = w.verdict(true).outcome()
	if _, ok := c.own[m.ID]; ok && e == 0 {
		delete(c.own, m.ID)
		c.gen++
	}
	if e == 0 && c.guardsIn(cl.mntNS) {
		if t, err := c.table(cl); err == nil {
			c.pruneGuards(cl.mntNS, t)
		}
	}
	return e, why
}

func (c *Container) mount(w *worker, cl *caller, k *call) (unix.Errno, string) {
	f := k.flags
	switch {
	case f&unix.MS_REMOUNT != 0:
		return c.remount(w, cl, k)
	case f&unix.MS_BIND != 0:
		return c.bind(w, cl, k)
	case f&(unix.MS_SHARED|unix.MS_PRIVATE|unix.MS_SLAVE|unix.MS_UNBINDABLE) != 0:
		r, _ := w.call(cl, request{op: opPropagation, target: *k.target, flags: f})
		return r.outcome()
	case f&unix.MS_MOVE != 0:
		return c.move(w, cl, k)
	}
	return c.newMount(w, cl, k)
}

// remount changes a mount's flags (with MS_BIND) or its filesystem's
// options too (without). Either way the mount's flags become those given,
// so a locked flag must be among them.
func (c *Container) remount(w *worker, cl *caller, k *call) (unix.Errno, string) {
	q := request{target: *k.target}
	if k.flags&unix.MS_BIND != 0 {
		q.op = opSetattr
		q.attrSet, q.attrClr = mountAttrs(k.flags)
	} else {
		q.op = opRemount
		q.source = deref(k.source)
		q.fstype, q.data, q.flags = k.fstype, k.data, k.flags
		if k.data != nil {
			d := hostIDsToCaller(*k.data, cl.tid)
			q.data = &d
		}
	}
	m, e, why := c.resolveMountPoint(w, cl, q)
	if e != 0 {
		return e, why
	}
	if missing := c.locksOf(m) &^ lock(k.flags&lockable); missing != 0 {
		return refuse(w, unix.EPERM, fmt.Sprintf("%s would lose %s", m.Mountpoint, describe(missing)))
	}
	return w.verdict(true).outcome()
}

// mountAttrs turns the flags of a bind remount into mount_setattr's: the
// mount's flags become exactly those given, its atime mode is kept unless
// one is given, as mount(2) does.
func mountAttrs(flags uintptr) (set, clr uint64) {
	pairs := []struct {
		ms   uintptr
		attr uint64
	}{
		{unix.MS_RDONLY, unix.MOUNT_ATTR_RDONLY}, {unix.MS_NOSUID, unix.MOUNT_ATTR_NOSUID},
		{unix.MS_NODEV, unix.MOUNT_ATTR_NODEV}, {unix.MS_NOEXEC, unix.MOUNT_ATTR_NOEXEC},
		{unix.MS_NOSYMFOLLOW, unix.MOUNT_ATTR_NOSYMFOLLOW},
	}
	for _, p := range pairs {
		if flags&p.ms != 0 {
			set |= p.attr
		} else {
			clr |= p.attr
		}
	}
	if flags&(unix.MS_NOATIME|unix.MS_NODIRATIME|unix.MS_RELATIME|unix.MS_STRICTATIME) != 0 {
		clr |= unix.MOUNT_ATTR__ATIME | unix.MOUNT_ATTR_NODIRATIME
		switch {
		case flags&unix.MS_NOATIME != 0:
			set |= unix.MOUNT_ATTR_NOATIME
		case flags&unix.MS_STRICTATIME != 0:
			set |= unix.MOUNT_ATTR_STRICTATIME
		default:
			set |= unix.MOUNT_ATTR_RELATIME
		}
		if flags&unix.MS_NODIRATIME != 0 {
			set |= unix.MOUNT_ATTR_NODIRATIME
		}
	}
	return set, clr
}

// bind makes a bind mount, which shows what its source shows with the
// source's flags: it inherits the source's locks. Without MS_REC it would
// leave behind the mounts on top of the source, so a source with initial
// mounts on it is refused, as the kernel refuses one with locked mounts.
func (c *Container) bind(w *worker, cl *caller, k *call) (unix.Errno, string) {
	if k.source == nil {
		return unix.EFAULT, "no source"
	}
	q := request{op: opBind, target: *k.target, source: *k.source, wantSource: true, recursive: k.flags&unix.MS_REC != 0}
	r, e, why := c.resolve(w, cl, q)
	if e != 0 {
		return e, why
	}
	src := r.source.info
	if !q.recursive {
		t, err := c.table(cl)
		if err != nil {
			return refuse(w, unix.EPERM, "mount table: "+err.Error())
		}
		for _, m := range t {
			if m.Parent == src.ID && m.ID != src.ID && c.protected(m) {
				return refuse(w, unix.EINVAL, fmt.Sprintf("bind of %s would uncover %s", src.Mountpoint, m.Mountpoint))
			}
		}
	}
	locks := c.locksOf(src)
	r = w.verdict(true)
	if e, why = r.outcome(); e != 0 {
		return e, why
	}
	m := r.newMount.info
	if m == nil && r.newMount.id != 0 {
		if t, err := c.table(cl); err == nil {
			m = t[r.newMount.id]
		}
	}
	if m != nil {
		c.own[m.ID] = known{ref: refOf(m), locks: locks}
		c.gen++
	}
	return 0, why
}

func (c *Container) move(w *worker, cl *caller, k *call) (unix.Errno, string) {
	if k.source == nil {
		return unix.EFAULT, "no source"
	}
	q := request{op: opMove, target: *k.target, source: *k.source, wantSource: true}
	r, e, why := c.resolve(w, cl, q)
	if e != 0 {
		return e, why
	}
	if !r.source.root {
		return refuse(w, unix.EINVAL, "source is not a mount point")
	}
	if m := r.source.info; c.protected(m) {
		return refuse(w, unix.EPERM, "protected mount "+m.Mountpoint)
	}
	return w.verdict(true).outcome()
}

// newMount mounts a new filesystem where the caller asked, as the caller:
// it covers what is there and uncovers nothing.
func (c *Container) newMount(w *worker, cl *caller, k *call) (unix.Errno, string) {
	if k.fstype == nil {
		return unix.EINVAL, "no filesystem type"
	}
	if _, ok := viewBases[*k.fstype]; ok {
		// A bare proc or sysfs would show what the container's masks hide.
		return c.newFS(w, cl, k)
	}
	r, _ := w.call(cl, request{op: opNew, target: *k.target, source: deref(k.source), fstype: k.fstype, data: k.data, flags: k.flags})
	return r.outcome()
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func describe(l lock) string {
	var out []string
	for _, f := range []struct {
		l    lock
		name string
	}{{unix.MS_RDONLY, "read-only"}, {unix.MS_NOSUID, "nosuid"}, {unix.MS_NODEV, "nodev"}, {unix.MS_NOEXEC, "noexec"}} {
		if l&f.l != 0 {
			out = append(out, f.name)
		}
	}
	return strings.Join(out, ", ")
}

// hostIDsToCaller rewrites uid= and gid= options that name host IDs of
// the caller's range as the caller's own IDs. tmpfs shows its owner in
// /proc/mounts as a host ID whatever namespace reads it, and mount(8)
// passes those options back on a remount, which the kernel refuses as an
// ID the caller's namespace does not map.
func hostIDsToCaller(data string, tid uint32) string {
	opts := strings.Split(data, ",")
	changed := false
	for i, o := range opts {
		key, val, ok := strings.Cut(o, "=")
		if !ok || (key != "uid" && key != "gid") {
			continue
		}
		host, err := strconv.ParseUint(val, 10, 32)
		if err != nil {
			continue
		}
		file := "/proc/" + strconv.FormatUint(uint64(tid), 10) + "/" + key + "_map"
		if in, ok := inside(file, host); ok {
			opts[i] = key + "=" + strconv.FormatUint(in, 10)
			changed = true
		}
	}
	if !changed {
		return data
	}
	return strings.Join(opts, ",")
}

// inside returns the ID that host ID h has in the namespace whose map
// file (as the host reads it) is path, if it has one and h is not also
// an ID of that namespace's own numbering.
func inside(path string, h uint64) (uint64, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	var out uint64
	found, plain := false, false
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		in, _ := strconv.ParseUint(f[0], 10, 32)
		host, _ := strconv.ParseUint(f[1], 10, 32)
		n, _ := strconv.ParseUint(f[2], 10, 32)
		if h >= host && h < host+n {
			out, found = in+(h-host), true
		}
		if h >= in && h < in+n {
			plain = true
		}
	}
	return out, found && !plain
}
