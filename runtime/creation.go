package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	"github.com/moatrt/moat/config"
	"github.com/moatrt/moat/helper"
	"github.com/moatrt/moat/idmap"
	"github.com/moatrt/moat/internal/undo"
	"github.com/moatrt/moat/mounts"
	"github.com/moatrt/moat/mountvet"
	"github.com/moatrt/moat/policy"
	"github.com/moatrt/moat/procfs"
	"github.com/moatrt/moat/userns"
)

// creation is one create in progress: what its steps found and made. Each
// step that leaves something behind adds its undo, so that a failed create
// leaves nothing.
type creation struct {
	r      *Runtime
	o      CreateOpts
	undo   *undo.Stack
	bundle string
	spec   *specs.Spec
	cfg    *config.Config

	join    *joinTarget // the moat container whose user namespace it joins
	hostNet string      // a network namespace the host's user namespace owns
	ids     *userns.Allocator
	rng     userns.Range
	m       Mapping
	userns  *idmap.Userns       // of every ID-mapped mount, made on first use
	devices []specs.LinuxDevice // the devices moat makes the nodes of
	// table is the host's mount table, read once on first use: it grows
	// with every running container, so each create reads it at most once.
	table mounts.MountTable

	c *libcontainer.Container
}

// prepare does everything up to an existing libcontainer container whose
// init has not been started, in the order the steps read. With --debug,
// each step's time is logged.
func (r *Runtime) prepare(o CreateOpts, rollback *undo.Stack) (*libcontainer.Container, *specs.Spec, Mapping, error) {
	cr := &creation{r: r, o: o, undo: rollback}
	defer func() { cr.userns.Close() }() // made by takeIDs, if it got that far
	go warmEncoders()
	for _, step := range []struct {
		name string
		run  func() error
	}{
		{"load", cr.load},
		{"checkNamespaces", cr.checkNamespaces},
		{"takeIDs", cr.takeIDs},
		{"rewriteSpec", cr.rewriteSpec},
		{"stageMounts", cr.stageMounts},
		{"addViews", cr.addViews},
		{"setNetSysctls", cr.setNetSysctls},
		{"buildRootfs", cr.buildRootfs},
		{"createContainer", cr.createContainer},
	} {
		start := time.Now()
		if err := step.run(); err != nil {
			return nil, nil, Mapping{}, err
		}
		logrus.Debugf("create %s: %s took %s", o.ID, step.name, time.Since(start))
	}
	return cr.c, cr.spec, cr.m, nil
}

// warmEncoders builds encoding/json's encoders for what libcontainer
// writes at the end of a create (its state file, the config it sends the
// container's init), on another core while the steps before it wait on the
// kernel. Built cold in createContainer, they cost about a millisecond.
func warmEncoders() {
	_, _ = json.Marshal(&libcontainer.State{})
}

// specError marks a refusal of what the spec asks for, as docker shows it
// ("OCI runtime create failed: error in the container spec: ...").
func specError(err error) error {
	return fmt.Errorf("error in the container spec: %w", err)
}

// load reads the bundle and moat's config.
func (cr *creation) load() error {
	if err := checkID(cr.o.ID); err != nil {
		return err
	}
	bundle, err := filepath.Abs(cr.o.Bundle)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", cr.o.Bundle, err)
	}
	cr.bundle = bundle
	if cr.spec, err = LoadSpec(bundle); err != nil {
		return err
	}
	if _, err := os.Stat(cr.r.stateDir(cr.o.ID)); err == nil {
		return fmt.Errorf("container %s already exists", cr.o.ID)
	}
	cr.cfg, err = config.Load(cr.r.configPath)
	return err
}

// checkNamespaces refuses the host's namespaces and namespaces of the
// wrong type or owner, and finds whose user namespace the container joins.
func (cr *creation) checkNamespaces() error {
	var err error
	if cr.join, cr.hostNet, err = judgeNamespaces(cr.spec); err != nil {
		return specError(err)
	}
	return nil
}

// takeIDs gives the container its ID range, recorded host-wide before
// anything else is touched.
func (cr *creation) takeIDs() error {
	cr.ids = cr.r.allocator(cr.cfg)
	rng, err := cr.r.takeIDs(cr.ids, cr.o.ID, cr.join)
	if err != nil {
		return err
	}
	cr.undo.Add(func() {
		if _, err := cr.ids.Release(cr.r.root, cr.o.ID); err != nil {
			logrus.Warnf("release ids of %s: %v", cr.o.ID, err)
		}
	})
	cr.rng = rng
	cr.m = Mapping{UID: rng.UID, GID: rng.GID, Size: rng.Size}
	uids, gids := idMappings(cr.m)
	cr.userns = &idmap.Userns{UIDs: uids, GIDs: gids}
	logrus.Debugf("container %s: uid %d gid %d size %d shared %t", cr.o.ID, rng.UID, rng.GID, rng.Size, rng.Shared)
	return nil
}

// rewriteSpec applies the policy's rewrites: the user namespace and its
// mapping, private cgroup and time namespaces, the devices.
func (cr *creation) rewriteSpec() error {
	joinPath := ""
	if cr.join != nil {
		joinPath = cr.join.userns
	}
	boot, err := bootSeconds()
	if err != nil {
		return err
	}
	policy.IsolateUserns(cr.spec, cr.m, joinPath, boot)
	mountvet.Apply(cr.spec, helper.Socket)
	cr.devices, err = policy.ConfineDevices(cr.spec, policy.DeviceRules{
		Allowed: cr.cfg.AllowedDevices(), Config: cr.r.configPath,
		Probe: probeHostNode, Stat: statHostDevice,
	})
	if err != nil {
		return specError(err)
	}
	return nil
}

// stageMounts judges and stages what the container mounts from the host:
// bind sources, a pod network namespace's sysfs, the device nodes moat
// makes.
func (cr *creation) stageMounts() error {
	cr.undo.Add(func() {
		if err := cr.r.unmount(cr.r.root, cr.o.ID); err != nil {
			logrus.Warnf("clean up %s: %v", cr.o.ID, err)
		}
	})
	mp, err := mountPolicy(cr.cfg)
	if err != nil {
		return err
	}
	var joined []string
	if cr.join != nil {
		if joined, err = cr.r.holders(cr.ids, cr.rng.UID, cr.o.ID); err != nil {
			return err
		}
	}
	check := mountCheck(mp, cr.spec, cr.o.ID, joined, cr.cfg.Docker.DataRoot)
	if err := cr.r.stageBinds(cr.spec, cr.o.ID, cr.bundle, cr.userns, check, cr.mountTable); err != nil {
		return err
	}
	if err := cr.r.stageSysfs(cr.spec, cr.o.ID, cr.hostNet); err != nil {
		return err
	}
	// After stageBinds: these binds are moat's own nodes, not sources to
	// judge and map.
	if err := cr.r.stageDevices(cr.spec, cr.o.ID, cr.m, cr.devices); err != nil {
		return err
	}
	return openStaging(cr.r.bindsDir(cr.r.root, cr.o.ID), cr.m)
}

// openStaging lets the container's root, and no other user, search its
// staging dir: root's, in the container's root group, mode 0710.
// libcontainer's init, which runs as that root, then mounts each staged
// source by its path; where it cannot reach one, it asks the runtime
// process for an open file instead, a round trip per mount. The container
// gets no write access: with --no-pivot its root can reach the host's tree
// by escaping the chroot, and a dir it could write would let it swap
// entries for symlinks under the teardown.
func openStaging(dir string, m Mapping) error {
	err := os.Lchown(dir, 0, int(m.GID))
	if errors.Is(err, os.ErrNotExist) {
		return nil // nothing staged
	}
	if err == nil {
		err = os.Chmod(dir, 0o710)
	}
	if err != nil {
		return fmt.Errorf("staging dir: %w", err)
	}
	return nil
}

// setNetSysctls writes the spec's net.* sysctls into a network namespace
// the host's user namespace owns, where the container's init could not.
// addViews binds the helper's /proc and /sys views over the kernel's
// files when the config asks for them: after stageMounts, since they are
// moat's own mounts, not sources to judge. The helper must serve them
// before the init opens them.
func (cr *creation) addViews() error {
	if !cr.cfg.Views.Enabled {
		return nil
	}
	binds := procfs.Binds(helper.ViewsDir, cr.o.ID, cr.spec.Mounts)
	if len(binds) == 0 {
		return nil
	}
	exe, err := helperBinary()
	if err != nil {
		return err
	}
	if err := helper.EnsureViews(exe); err != nil {
		return err
	}
	cr.spec.Mounts = append(cr.spec.Mounts, binds...)
	return nil
}

func (cr *creation) setNetSysctls() error {
	return netSysctls(cr.spec, cr.hostNet, cr.m)
}

// buildRootfs shows the container its rootfs through ID-mapped mounts at a
// path of moat's own (undone with the staged mounts).
func (cr *creation) buildRootfs() error {
	source := cr.spec.Root.Path
	if !filepath.IsAbs(source) {
		source = filepath.Join(cr.bundle, source)
	}
	target := cr.r.rootfsTarget(cr.o.ID)
	if err := mounts.Rootfs(source, target, cr.userns, cr.mountTable); err != nil {
		return fmt.Errorf("rootfs %s: %w", source, err)
	}
	cr.spec.Root.Path = target
	return nil
}

// mountTable returns the host's mount table as first read during this
// create, less moat's own mount dir: the mounts there are clones of
// sources already judged and containers' rootfs, no view a user has of the
// host and never an engine's rootfs. The mounts it is asked about (bind
// sources once opened, the rootfs mount the engine made) are all there
// before the first read, and those moat adds itself since are not its
// concern.
func (cr *creation) mountTable() (mounts.MountTable, error) {
	if cr.table == nil {
		t, err := mounts.ReadMountTable()
		if err != nil {
			return nil, err
		}
		cr.table = t.Without(cr.r.mountDir)
	}
	return cr.table, nil
}

// createContainer hands the rewritten spec to libcontainer.
func (cr *creation) createContainer() error {
	// specconv resolves relative paths and records the bundle from the cwd.
	if err := os.Chdir(cr.bundle); err != nil {
		return err
	}
	lc, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:       cr.o.ID,
		UseSystemdCgroup: cr.r.systemdCgroup,
		NoPivotRoot:      cr.o.NoPivot,
		NoNewKeyring:     cr.o.NoNewKeyring,
		Spec:             cr.spec,
	})
	if err != nil {
		return fmt.Errorf("convert spec: %w", err)
	}
	c, err := libcontainer.Create(cr.r.root, cr.o.ID, lc)
	if errors.Is(err, libcontainer.ErrExist) {
		return fmt.Errorf("container %s already exists", cr.o.ID)
	}
	if err != nil {
		return err
	}
	cr.undo.Add(func() {
		if err := c.Destroy(); err != nil {
			logrus.Warnf("destroy %s: %v", cr.o.ID, err)
		}
	})
	cr.c = c
	return cr.r.recordCgroup(cr.o.ID, lc.Cgroups)
}

// idMappings is the container's one range as the kernel's mappings.
func idMappings(m Mapping) (uids, gids []idmap.Mapping) {
	return []idmap.Mapping{{ContainerID: 0, HostID: m.UID, Size: m.Size}},
		[]idmap.Mapping{{ContainerID: 0, HostID: m.GID, Size: m.Size}}
}
