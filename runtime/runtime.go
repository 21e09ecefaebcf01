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
	// IDs is the host-wide allocator of ID ranges.
	IDs *userns.Allocator
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
	ids           *userns.Allocator
}

// New returns a Runtime for opts.
func New(opts Options) (*Runtime, error) {
	r := &Runtime{
		root:          opts.Root,
		systemdCgroup: opts.SystemdCgroup,
		mountDir:      opts.MountDir,
		ids:           opts.IDs,
	}
	if r.root == "" {
		r.root = DefaultRoot
	}
	if r.mountDir == "" {
		r.mountDir = DefaultMountDir
	}
	if r.ids == nil {
		r.ids = userns.New(userns.Config{})
	}
	abs, err := filepath.Abs(r.root)
	if err != nil {
		return nil, fmt.Errorf("state root %s: %w", r.root, err)
	}
	r.root = abs
	return r, nil
}

// Root returns the absolute state root.
func (r *Runtime) Root() string { return r.root }

// rootfsTarget is where the container's ID-mapped rootfs is mounted. It is
// derived from the state root and the ID so that delete finds it even when
// the libcontainer state is gone; the root's hash keeps docker's, containerd's
// and moat's own containers of the same ID apart.
func (r *Runtime) rootfsTarget(id string) string {
	sum := sha256.Sum256([]byte(r.root))
	return filepath.Join(r.mountDir, hex.EncodeToString(sum[:6]), id)
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
		return nil, errors.New("container id cannot be empty")
	}
	c, err := libcontainer.Load(r.root, id)
	if errors.Is(err, libcontainer.ErrNotExist) {
		return nil, fmt.Errorf("container %s does not exist", id)
	}
	return c, err
}
