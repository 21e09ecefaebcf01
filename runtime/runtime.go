// Package runtime owns one container's life in moat: it loads the bundle,
// applies the isolation policy, takes an exclusive ID range, assembles the
// ID-mapped rootfs, hands the final config to libcontainer, and undoes all of
// it on delete. The command line (cmd/moat) only parses flags and prints.
package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/sirupsen/logrus"

	"github.com/moatrt/moat/config"
	"github.com/moatrt/moat/mounts"
	"github.com/moatrt/moat/userns"
)

// Options configure a Runtime. Zero values take the defaults below.
type Options struct {
	// Root is the libcontainer state root (runc's --root).
	Root string
	// SystemdCgroup selects the systemd cgroup driver.
	SystemdCgroup bool
	// MountDir is where moat mounts each container's ID-mapped rootfs.
	MountDir string
	// IDs is the host-wide allocator of ID ranges; nil builds one from
	// the config file.
	IDs *userns.Allocator
	// ConfigPath is moat's config file, read by create and run.
	ConfigPath string
}

const (
	DefaultRoot     = "/run/moat"
	DefaultMountDir = "/run/moat-mounts"
)

// Runtime runs containers under one state root.
type Runtime struct {
	root          string
	systemdCgroup bool
	mountDir      string
	configPath    string
	// ids serves release and listing; create takes ranges through
	// allocator, which follows the config file.
	ids      *userns.Allocator
	fixedIDs bool
}

// New returns a Runtime for opts.
func New(opts Options) (*Runtime, error) {
	r := &Runtime{
		root:          opts.Root,
		systemdCgroup: opts.SystemdCgroup,
		mountDir:      opts.MountDir,
		configPath:    opts.ConfigPath,
		ids:           opts.IDs,
		fixedIDs:      opts.IDs != nil,
	}
	if r.root == "" {
		r.root = DefaultRoot
	}
	if r.mountDir == "" {
		r.mountDir = DefaultMountDir
	}
	if r.configPath == "" {
		r.configPath = config.DefaultPath
	}
	if r.ids == nil {
		r.ids = userns.New(userns.Config{Reclaimed: r.reclaimed})
	}
	abs, err := filepath.Abs(r.root)
	if err != nil {
		return nil, fmt.Errorf("state root %s: %w", r.root, err)
	}
	r.root = abs
	return r, nil
}

// rootfsTarget is where the container's ID-mapped rootfs is mounted. It is
// derived from the state root and the ID so that delete finds it even when
// the libcontainer state is gone; the root's hash keeps docker's, containerd's
// and moat's own containers of the same ID apart.
func (r *Runtime) rootfsTarget(id string) string {
	return r.mountTarget(r.root, id)
}

func (r *Runtime) mountTarget(root, id string) string {
	sum := sha256.Sum256([]byte(root))
	return filepath.Join(r.mountDir, hex.EncodeToString(sum[:6]), id)
}

// allocator is the ID allocator for create, with the pool the config file
// names.
func (r *Runtime) allocator(cfg *config.Config) *userns.Allocator {
	if r.fixedIDs {
		return r.ids
	}
	return userns.New(userns.Config{User: cfg.IDs.SubIDUser, Count: cfg.IDs.Containers, Reclaimed: r.reclaimed})
}

// reclaimed cleans up after a container whose range was reclaimed because
// it is gone: a create killed midway, never deleted, may have left its
// mounts.
func (r *Runtime) reclaimed(rng userns.Range) {
	if err := r.unmount(rng.Owner.Root, rng.Owner.ID); err != nil {
		logrus.Warnf("clean up %s: %v", rng.Owner, err)
	}
}

// unmount removes everything moat mounted for container id under root:
// its staged bind mounts and its rootfs.
func (r *Runtime) unmount(root, id string) error {
	if err := mounts.TeardownStaged(r.bindsDir(root, id)); err != nil {
		return fmt.Errorf("unmount bind mounts of %s: %w", id, err)
	}
	if err := mounts.Teardown(r.mountTarget(root, id)); err != nil {
		return fmt.Errorf("unmount rootfs of %s: %w", id, err)
	}
	return nil
}

// detachFromHost takes container id's rootfs and staged mounts off the
// host's mount table once its init has made its own copies: the container
// needs them no more, and every mount left on the host makes each later
// mount namespace copy, and each read of the host's mount table, slower
// for every container. Teardown removes what remains. A failure only
// leaves the mounts for that teardown.
func (r *Runtime) detachFromHost(id string) {
	if err := mounts.DetachStaged(r.bindsDir(r.root, id)); err != nil {
		logrus.Warnf("detach staged mounts of %s: %v", id, err)
	}
	if err := mounts.Detach(r.mountTarget(r.root, id)); err != nil {
		logrus.Warnf("detach rootfs of %s: %v", id, err)
	}
}

// stateDir is libcontainer's directory for id.
func (r *Runtime) stateDir(id string) string {
	return filepath.Join(r.root, id)
}

// alive tells the ID allocator whether a range's owner still exists: a
// container exists while its state directory does.
func (r *Runtime) alive(o userns.Owner) bool {
	_, err := os.Stat(filepath.Join(o.Root, o.ID))
	return !errors.Is(err, os.ErrNotExist)
}

// load opens an existing container.
func (r *Runtime) load(id string) (*libcontainer.Container, error) {
	if id == "" {
		return nil, ErrEmptyID
	}
	c, err := libcontainer.Load(r.root, id)
	if errors.Is(err, libcontainer.ErrNotExist) {
		return nil, ErrNotExist
	}
	return c, err
}
