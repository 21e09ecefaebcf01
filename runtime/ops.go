package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/utils"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/userns"
)

// State is what `moat state` and `moat list` print, field for field what
// runc prints, since containerd and docker parse it.
type State struct {
	Version        string            `json:"ociVersion"`
	ID             string            `json:"id"`
	InitProcessPid int               `json:"pid"`
	Status         string            `json:"status"`
	Bundle         string            `json:"bundle"`
	Rootfs         string            `json:"rootfs"`
	Created        time.Time         `json:"created"`
	Annotations    map[string]string `json:"annotations,omitempty"`
	Owner          string            `json:"owner"`
}

// Start runs the user process of a created container.
func (r *Runtime) Start(id string) error {
	c, err := r.load(id)
	if err != nil {
		return err
	}
	st, err := c.Status()
	if err != nil {
		return err
	}
	switch st {
	case libcontainer.Created:
		return c.Exec()
	case libcontainer.Stopped:
		return ErrStartStopped
	case libcontainer.Running:
		return ErrStartRunning
	default:
		return errStartInState(st)
	}
}

// ExecOpts describe a process to run in an existing container.
type ExecOpts struct {
	ID      string
	Process *specs.Process
	IO      IOOpts
	// IgnorePaused allows exec into a paused container.
	IgnorePaused bool
}

// Exec runs a further process in a running container. In the foreground it
// returns the process's exit status.
func (r *Runtime) Exec(o ExecOpts) (int, error) {
	c, err := r.load(o.ID)
	if err != nil {
		return -1, err
	}
	if err := ValidateProcess(o.Process); err != nil {
		return -1, err
	}
	st, err := c.Status()
	if err != nil {
		return -1, err
	}
	switch {
	case st == libcontainer.Stopped:
		return -1, ErrExecStopped
	case st == libcontainer.Paused && !o.IgnorePaused:
		return -1, ErrExecPaused
	}
	if err := checkTerminal(o.Process.Terminal, o.IO); err != nil {
		return -1, err
	}
	p, err := newProcess(o.Process, false)
	if err != nil {
		return -1, err
	}
	if err := addPreservedFDs(p, o.IO.PreserveFDs); err != nil {
		return -1, err
	}
	var sigs chan os.Signal
	if !o.IO.Detach {
		sigs = notifySignals()
	}
	cfg := c.Config()
	uid, err := cfg.HostRootUID()
	if err != nil {
		return -1, err
	}
	gid, err := cfg.HostRootGID()
	if err != nil {
		return -1, err
	}
	s, err := setupIO(p, o.Process.Terminal, o.IO, uid, gid)
	if err != nil {
		return -1, err
	}
	defer s.close()
	if sc := cfg.Seccomp; sc != nil && sc.ListenerPath != "" {
		if err := ensureHelper(); err != nil {
			return -1, err
		}
	}
	since := time.Now()
	if err := c.Run(p); err != nil {
		return -1, err
	}
	if sc := cfg.Seccomp; sc != nil && sc.ListenerPath != "" {
		if err := confirmVetting(o.ID, p, since); err != nil {
			_ = p.Signal(unix.SIGKILL)
			_, _ = p.Wait()
			return -1, err
		}
	}
	return afterStart(p, s, o.IO, sigs)
}

// ExecArgs are the parts of an exec's process given on the command line
// instead of in a process file.
type ExecArgs struct {
	Args     []string
	Terminal bool
	// Cwd, if set, replaces the container's working directory.
	Cwd string
	// Env is added to the container's environment.
	Env []string
	// User is "UID[:GID]"; empty keeps the container's user.
	User string
}

// ExecProcess builds an exec's process as runc does: the container's own
// process from its config.json, with the command line's changes.
func (r *Runtime) ExecProcess(id string, a ExecArgs) (*specs.Process, error) {
	st, err := r.State(id)
	if err != nil {
		return nil, err
	}
	spec, err := LoadSpec(st.Bundle)
	if err != nil {
		return nil, err
	}
	p := spec.Process
	p.Args = a.Args
	p.Terminal = a.Terminal
	if a.Cwd != "" {
		p.Cwd = a.Cwd
	}
	p.Env = append(p.Env, a.Env...)
	if u := a.User; u != "" {
		uid, gid, hasGID := strings.Cut(u, ":")
		n, err := strconv.ParseUint(uid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--user %q: uid must be a number", u)
		}
		p.User.UID = uint32(n)
		if hasGID {
			n, err := strconv.ParseUint(gid, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("--user %q: gid must be a number", u)
			}
			p.User.GID = uint32(n)
		}
	}
	return p, nil
}

// Kill sends sig to the container's init. With all, a stopped container is
// not an error (the shim asks for --all on containers that may be gone).
func (r *Runtime) Kill(id string, sig unix.Signal, all bool) error {
	c, err := r.load(id)
	if err != nil {
		return err
	}
	err = c.Signal(sig)
	if errors.Is(err, libcontainer.ErrNotRunning) && all {
		return nil
	}
	return stateError(err)
}

// Delete removes a container: its processes (with force), its libcontainer
// state, its rootfs mounts and its ID range. What is already gone is skipped,
// so delete also cleans up after a create that was killed midway.
func (r *Runtime) Delete(id string, force bool) error {
	if err := checkID(id); err != nil {
		return err
	}
	c, err := libcontainer.Load(r.root, id)
	switch {
	case errors.Is(err, libcontainer.ErrNotExist):
		// A create interrupted before libcontainer saved its state leaves a
		// state dir without state, and maybe cgroups, mounts and a range.
		// A cgroup that cannot be emptied keeps the rest: its processes
		// still run with the range.
		if err := r.removeRecordedCgroup(id); err != nil {
			return err
		}
		if err := os.RemoveAll(r.stateDir(id)); err != nil {
			return fmt.Errorf("remove state of %s: %w", id, err)
		}
		if err := r.release(id); err != nil {
			return err
		}
		if force {
			return nil
		}
		// What runc says after removing such a dir; the shim takes it
		// for a container already deleted.
		return ErrNotExist
	case err != nil:
		return err
	}
	st, err := c.Status()
	if err != nil {
		return err
	}
	switch {
	case force || st == libcontainer.Created:
		err = killAndDestroy(c)
	case st == libcontainer.Stopped:
		err = c.Destroy()
	default:
		return errDeleteNotStopped(id, st)
	}
	return r.afterDestroy(id, err)
}

// afterDestroy releases what moat holds for container id once libcontainer
// has destroyed it, and reports destroyErr. libcontainer removes the
// cgroups and the state dir before it runs the poststop hooks, so a hook
// that fails leaves a container that is gone: its mounts and range go too,
// and the hook's failure is reported after. While the state dir remains
// (its cgroup could not be removed, or init would not die), the container
// still exists and keeps them for another delete.
func (r *Runtime) afterDestroy(id string, destroyErr error) error {
	if destroyErr != nil {
		if _, err := os.Stat(r.stateDir(id)); !errors.Is(err, os.ErrNotExist) {
			return destroyErr
		}
	}
	err := r.release(id)
	if destroyErr != nil {
		// Drop libcontainer's "unable to destroy container": it is gone.
		if inner := errors.Unwrap(destroyErr); inner != nil {
			destroyErr = inner
		}
		destroyErr = fmt.Errorf("container %s deleted, but its poststop hooks failed: %w", id, destroyErr)
	}
	return errors.Join(err, destroyErr)
}

// release unmounts the rootfs and staged mounts of id and frees its ID
// range.
func (r *Runtime) release(id string) error {
	start := time.Now()
	if err := r.unmount(r.root, id); err != nil {
		return err
	}
	unmounted := time.Now()
	if _, err := r.ids.Release(r.root, id); err != nil {
		return fmt.Errorf("release ids of %s: %w", id, err)
	}
	logrus.Debugf("delete %s: unmount took %s, release ids took %s", id, unmounted.Sub(start), time.Since(unmounted))
	return nil
}

func killAndDestroy(c *libcontainer.Container) error {
	_ = c.Signal(unix.SIGKILL)
	for i := 0; i < 100; i++ {
		if err := c.Signal(unix.Signal(0)); err != nil {
			return c.Destroy()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("container %s: init still running 10s after SIGKILL", c.ID())
}

// State reports one container.
func (r *Runtime) State(id string) (*State, error) {
	c, err := r.load(id)
	if err != nil {
		return nil, err
	}
	return containerState(c)
}

func containerState(c *libcontainer.Container) (*State, error) {
	ls, err := c.State()
	if err != nil {
		return nil, err
	}
	st, err := c.Status()
	if err != nil {
		return nil, err
	}
	pid := ls.BaseState.InitProcessPid
	if st == libcontainer.Stopped {
		pid = 0
	}
	bundle, annotations := utils.Annotations(ls.Config.Labels)
	return &State{
		Version:        specs.Version,
		ID:             ls.BaseState.ID,
		InitProcessPid: pid,
		Status:         st.String(),
		Bundle:         bundle,
		Rootfs:         ls.BaseState.Config.Rootfs,
		Created:        ls.BaseState.Created,
		Annotations:    annotations,
		Owner:          "root",
	}, nil
}

// List reports every container under the root.
func (r *Runtime) List() ([]State, error) {
	entries, err := os.ReadDir(r.root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []State
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		c, err := libcontainer.Load(r.root, e.Name())
		if err != nil {
			logrus.Debugf("list: skip %s: %v", filepath.Join(r.root, e.Name()), err)
			continue
		}
		st, err := containerState(c)
		if err != nil {
			logrus.Debugf("list: skip %s: %v", e.Name(), err)
			continue
		}
		out = append(out, *st)
	}
	return out, nil
}

// Pids returns the host PIDs of the container's processes.
func (r *Runtime) Pids(id string) ([]int, error) {
	c, err := r.load(id)
	if err != nil {
		return nil, err
	}
	return c.Processes()
}

// Pause freezes the container.
func (r *Runtime) Pause(id string) error {
	c, err := r.load(id)
	if err != nil {
		return err
	}
	return stateError(c.Pause())
}

// Resume thaws the container.
func (r *Runtime) Resume(id string) error {
	c, err := r.load(id)
	if err != nil {
		return err
	}
	return stateError(c.Resume())
}

// Ranges lists the ID ranges held host-wide, by every state root.
func (r *Runtime) Ranges() ([]userns.Range, error) {
	return r.ids.List()
}
