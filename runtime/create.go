package runtime

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/helper"
	"github.com/moatrt/moat/internal/undo"
	"github.com/moatrt/moat/policy"
	"github.com/moatrt/moat/userns"
)

// CreateOpts describe a container to create from a bundle.
type CreateOpts struct {
	ID           string
	Bundle       string
	NoPivot      bool
	NoNewKeyring bool
	IO           IOOpts
}

func checkID(id string) error {
	if id == "" {
		return ErrEmptyID
	}
	if !validID(id) {
		return fmt.Errorf("invalid container id %q: use letters, digits, '_', '+', '-' and '.'", id)
	}
	return nil
}

// validID is runc's rule, [A-Za-z0-9_+.-]+ and not "." or "..", checked by
// hand: compiling a regexp at package init cost every moat process, the
// container's init among them, about half a millisecond of cold code.
func validID(id string) bool {
	if id == "" || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '_', c == '+', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}

// Create sets up a container and leaves its init waiting for Start.
func (r *Runtime) Create(o CreateOpts) error {
	o.IO.Detach = true
	_, err := r.launch(o, false)
	return err
}

// Run creates and starts a container. In the foreground it returns the
// container's exit status and deletes it afterwards.
func (r *Runtime) Run(o CreateOpts) (int, error) {
	return r.launch(o, true)
}

func (r *Runtime) launch(o CreateOpts, run bool) (status int, retErr error) {
	var rollback undo.Stack
	defer rollback.OnError(&retErr)
	c, spec, ids, err := r.prepare(o, &rollback)
	if err != nil {
		return -1, err
	}
	if err := checkTerminal(spec.Process.Terminal, o.IO); err != nil {
		return -1, err
	}
	p, err := newProcess(spec.Process, true)
	if err != nil {
		return -1, err
	}
	if err := addPreservedFDs(p, o.IO.PreserveFDs); err != nil {
		return -1, err
	}
	var sigs chan os.Signal
	if run && !o.IO.Detach {
		// Orphans inside the container reparent to us, so we can reap them.
		_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
		sigs = notifySignals()
	}
	s, err := setupIO(p, spec.Process.Terminal, o.IO, int(ids.UID), int(ids.GID))
	if err != nil {
		return -1, err
	}
	defer s.close()
	// Only a process whose profile lets mount(2) through has a listener.
	sc := spec.Linux.Seccomp
	vetted := sc != nil && sc.ListenerPath != ""
	start := time.Now()
	if vetted {
		if err := ensureHelper(); err != nil {
			return -1, err
		}
		logrus.Debugf("create %s: helper greeted in %s", o.ID, time.Since(start))
	}
	start = time.Now()
	if run {
		err = c.Run(p)
	} else {
		err = c.Start(p)
	}
	if err != nil {
		return -1, err
	}
	logrus.Debugf("create %s: start init took %s", o.ID, time.Since(start))
	if vetted {
		start = time.Now()
		// The init's listener, told from an earlier container of the same
		// name by the nonce in its metadata.
		err = helper.Confirm(o.ID, 0, sc.ListenerMetadata, time.Time{})
		logrus.Debugf("create %s: vetting confirmed in %s", o.ID, time.Since(start))
		if err != nil {
			if derr := killAndDestroy(c); derr != nil {
				logrus.Warnf("destroy %s: %v", o.ID, derr)
			}
			return -1, err
		}
	}
	// The init has done its mounts and pivoted into the rootfs.
	r.detachFromHost(o.ID)
	status, err = afterStart(p, s, o.IO, sigs)
	if err != nil || o.IO.Detach {
		return status, err
	}
	// The container is at hand: no need to load it again as Delete would.
	// As with runc, a failed delete is reported but the status stays the
	// container's.
	if err := r.afterDestroy(o.ID, killAndDestroy(c)); err != nil {
		logrus.Errorf("delete %s after run: %v", o.ID, err)
	}
	return status, nil
}

func addPreservedFDs(p *libcontainer.Process, n int) error {
	base := 3 + len(p.ExtraFiles)
	for fd := base; fd < base+n; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			return fmt.Errorf("preserved fd %d (of %d) is not open: %w", fd-base, n, err)
		}
		p.ExtraFiles = append(p.ExtraFiles, os.NewFile(uintptr(fd), fmt.Sprintf("preserved-fd-%d", fd)))
	}
	return nil
}

// takeIDs gives container id its ID range: the range of the container whose
// user namespace it joins, or an exclusive one of its own. The allocator
// records this process's PID and start time with the range, so a range being
// created is never taken for a dead container's.
func (r *Runtime) takeIDs(ids *userns.Allocator, id string, join *joinTarget) (userns.Range, error) {
	owner := userns.Owner{Root: r.root, ID: id, PID: os.Getpid()}
	if join == nil {
		rng, err := ids.Allocate(owner, r.alive)
		if err != nil {
			return rng, fmt.Errorf("allocate ids for %s: %w", id, err)
		}
		return rng, nil
	}
	rng, err := ids.Join(owner, join.uid, r.alive)
	if errors.Is(err, userns.ErrNotAllocated) {
		return rng, specError(fmt.Errorf("namespace %s belongs to no moat container (%w); "+policy.JoinOnlyMoat, join.via, err))
	}
	if err != nil {
		return rng, fmt.Errorf("share ids of the container of %s with %s: %w", join.via, id, err)
	}
	return rng, nil
}

// holders lists the other containers under this root that hold the range
// starting at uid: those whose namespaces container id joins.
func (r *Runtime) holders(ids *userns.Allocator, uid uint32, id string) ([]string, error) {
	rs, err := ids.List()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rg := range rs {
		if rg.UID == uid && rg.Owner.Root == r.root && rg.Owner.ID != id {
			out = append(out, rg.Owner.ID)
		}
	}
	return out, nil
}

// confirmVetting makes sure the helper serves the seccomp listener of
// exec'd process p and has it kept safe from its own crash: a process
// whose mount calls nobody could vet must not run on.
func confirmVetting(id string, p *libcontainer.Process, since time.Time) error {
	pid, err := p.Pid()
	if err != nil {
		return err
	}
	return helper.Confirm(id, pid, "", since)
}

// ensureHelper makes sure the mount-vetting helper runs before a process
// whose mount calls it answers starts: libcontainer hands it the process's
// seccomp listener.
func ensureHelper() error {
	exe, err := helperBinary()
	if err != nil {
		return err
	}
	return helper.Ensure(exe)
}

// helperBinary is what the helper runs: this moat.
func helperBinary() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find moat's binary for the helper: %w", err)
	}
	return exe, nil
}
