package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/config"
	"github.com/moatrt/moat/idmap"
	"github.com/moatrt/moat/mounts"
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

var validID = regexp.MustCompile(`^[\w+\-.]+$`)

func checkID(id string) error {
	if id == "" {
		return ErrEmptyID
	}
	if !validID.MatchString(id) || id == "." || id == ".." {
		return fmt.Errorf("invalid container id %q: use letters, digits, '_', '+', '-' and '.'", id)
	}
	return nil
}

// undo collects the steps to roll back a failed create, run last-first.
type undo []func()

func (u *undo) add(f func()) { *u = append(*u, f) }

func (u undo) run() {
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
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
	var rollback undo
	defer func() {
		if retErr != nil {
			rollback.run()
		}
	}()
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
	if run {
		err = c.Run(p)
	} else {
		err = c.Start(p)
	}
	if err != nil {
		return -1, err
	}
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

// prepare does everything up to an existing libcontainer container whose
// init has not been started. Each step that leaves something behind adds its
// undo to rollback.
func (r *Runtime) prepare(o CreateOpts, rollback *undo) (*libcontainer.Container, *specs.Spec, Mapping, error) {
	if err := checkID(o.ID); err != nil {
		return nil, nil, Mapping{}, err
	}
	bundle, err := filepath.Abs(o.Bundle)
	if err != nil {
		return nil, nil, Mapping{}, fmt.Errorf("bundle %s: %w", o.Bundle, err)
	}
	spec, err := LoadSpec(bundle)
	if err != nil {
		return nil, nil, Mapping{}, err
	}
	if _, err := os.Stat(r.stateDir(o.ID)); err == nil {
		return nil, nil, Mapping{}, fmt.Errorf("container %s already exists", o.ID)
	}
	if err := checkNamespacePaths(spec); err != nil {
		return nil, nil, Mapping{}, fmt.Errorf("error in the container spec: %w", err)
	}
	if err := checkHostNamespaces(spec); err != nil {
		return nil, nil, Mapping{}, fmt.Errorf("error in the container spec: invalid or unsupported container spec: %w", err)
	}

	cfg, err := config.Load(r.configPath)
	if err != nil {
		return nil, nil, Mapping{}, err
	}
	mp, err := mountPolicy(cfg)
	if err != nil {
		return nil, nil, Mapping{}, err
	}
	join, hostNet, err := joinedUserns(spec)
	if err != nil {
		return nil, nil, Mapping{}, fmt.Errorf("error in the container spec: %w", err)
	}
	ids := r.allocator(cfg)
	rng, err := r.takeIDs(ids, o.ID, join)
	if err != nil {
		return nil, nil, Mapping{}, err
	}
	rollback.add(func() {
		if _, err := r.ids.Release(r.root, o.ID); err != nil {
			logrus.Warnf("release ids of %s: %v", o.ID, err)
		}
	})
	m := Mapping{UID: rng.UID, GID: rng.GID, Size: rng.Size}
	logrus.Debugf("container %s: uid %d gid %d size %d shared %t", o.ID, m.UID, m.GID, m.Size, rng.Shared)

	joinPath := ""
	if join != nil {
		joinPath = join.userns
	}
	boot, err := bootSeconds()
	if err != nil {
		return nil, nil, Mapping{}, err
	}
	policy.IsolateUserns(spec, m, joinPath, boot)
	devices, err := policy.ConfineDevices(spec, policy.DeviceRules{
		Allowed: cfg.AllowedDevices(), Config: r.configPath,
		Probe: probeHostNode, Stat: statHostDevice,
	})
	if err != nil {
		return nil, nil, Mapping{}, fmt.Errorf("error in the container spec: %w", err)
	}
	rollback.add(func() {
		if err := r.unmount(r.root, o.ID); err != nil {
			logrus.Warnf("clean up %s: %v", o.ID, err)
		}
	})
	var joined []string
	if join != nil {
		if joined, err = r.holders(ids, rng.UID, o.ID); err != nil {
			return nil, nil, Mapping{}, err
		}
	}
	check := mountCheck(mp, spec, o.ID, joined, cfg.Docker.DataRoot)
	if err := r.stageBinds(spec, o.ID, bundle, m, check); err != nil {
		return nil, nil, Mapping{}, err
	}
	if err := r.stageSysfs(spec, o.ID, hostNet); err != nil {
		return nil, nil, Mapping{}, err
	}
	// After stageBinds: these binds are moat's own nodes, not sources to
	// judge and map.
	if err := r.stageDevices(spec, o.ID, m, devices); err != nil {
		return nil, nil, Mapping{}, err
	}

	source := spec.Root.Path
	if !filepath.IsAbs(source) {
		source = filepath.Join(bundle, source)
	}
	target := r.rootfsTarget(o.ID)
	uids := []idmap.Mapping{{ContainerID: 0, HostID: m.UID, Size: m.Size}}
	gids := []idmap.Mapping{{ContainerID: 0, HostID: m.GID, Size: m.Size}}
	if err := mounts.Rootfs(source, target, uids, gids); err != nil {
		return nil, nil, Mapping{}, fmt.Errorf("rootfs %s: %w", source, err)
	}
	spec.Root.Path = target
	if err := netSysctls(spec, hostNet, m); err != nil {
		return nil, nil, Mapping{}, err
	}

	// specconv resolves relative paths and records the bundle from the cwd.
	if err := os.Chdir(bundle); err != nil {
		return nil, nil, Mapping{}, err
	}
	config, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:       o.ID,
		UseSystemdCgroup: r.systemdCgroup,
		NoPivotRoot:      o.NoPivot,
		NoNewKeyring:     o.NoNewKeyring,
		Spec:             spec,
	})
	if err != nil {
		return nil, nil, Mapping{}, fmt.Errorf("convert spec: %w", err)
	}
	c, err := libcontainer.Create(r.root, o.ID, config)
	if errors.Is(err, libcontainer.ErrExist) {
		return nil, nil, Mapping{}, fmt.Errorf("container %s already exists", o.ID)
	}
	if err != nil {
		return nil, nil, Mapping{}, err
	}
	rollback.add(func() {
		if err := c.Destroy(); err != nil {
			logrus.Warnf("destroy %s: %v", o.ID, err)
		}
	})
	if err := r.recordCgroup(o.ID, config.Cgroups); err != nil {
		return nil, nil, Mapping{}, err
	}
	return c, spec, m, nil
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
		return rng, fmt.Errorf("error in the container spec: namespace %s belongs to no moat container (%w); "+joinOnlyMoat, join.via, err)
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
