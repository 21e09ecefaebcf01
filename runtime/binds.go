package runtime

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sirupsen/logrus"

	"github.com/moatrt/moat/config"
	"github.com/moatrt/moat/engine"
	"github.com/moatrt/moat/idmap"
	"github.com/moatrt/moat/mounts"
	"github.com/moatrt/moat/policy"
)

// bindsDir is where a container's bind-mount sources are staged, beside its
// rootfs target. '@' cannot be in a container ID, so no container's rootfs
// or staging dir is ever another's.
func (r *Runtime) bindsDir(root, id string) string {
	return r.mountTarget(root, id) + "@binds"
}

// stageBinds checks and maps every bind mount of spec. Each source is opened
// once; the policy judges the real path of what was opened, and what is
// mounted is an ID-mapped clone of that same open file, staged at a path of
// moat's own that the spec then names. A symlink swapped after the check
// changes nothing. Mappings the caller gave a mount are replaced by the
// container's: they could otherwise map onto another container's IDs.
//
// mountTable returns the host's mount table; it is asked only after the
// first source is open, and only if one is.
func (r *Runtime) stageBinds(spec *specs.Spec, id, bundle string, u *idmap.Userns, check func(source string) error, mountTable func() (mounts.MountTable, error)) error {
	for i := range spec.Mounts {
		mnt := &spec.Mounts[i]
		if mnt.Type == "overlay" {
			if err := checkOverlay(mnt, check); err != nil {
				return specError(fmt.Errorf("mount %s: %w", mnt.Destination, err))
			}
			continue
		}
		if !policy.IsBind(mnt) {
			continue
		}
		source := mnt.Source
		if !filepath.IsAbs(source) {
			source = filepath.Join(bundle, source)
		}
		target := filepath.Join(r.bindsDir(r.root, id), strconv.Itoa(i))
		if err := stageBind(mnt, source, target, mountTable, u, check); err != nil {
			return err
		}
	}
	return nil
}

// stageBind opens one bind source, judges it and stages its ID-mapped
// clone at target, which the mount then names.
func stageBind(mnt *specs.Mount, source, target string, mountTable func() (mounts.MountTable, error), u *idmap.Userns, check func(string) error) error {
	src, err := mounts.OpenSource(source)
	if err != nil {
		return err
	}
	defer src.Close()
	table, err := mountTable()
	if err != nil {
		return err
	}
	recursive := policy.IsRecursive(mnt)
	if err := checkSource(src, table, recursive, check); err != nil {
		return specError(err)
	}
	userns, err := u.File()
	if err == nil {
		err = src.Stage(target, userns, recursive)
	}
	if err != nil {
		return fmt.Errorf("mount %s: %w", mnt.Destination, err)
	}
	policy.StagedBind(mnt, target)
	return nil
}

// checkSource judges a source by its own path and by every host path of
// what it shows (a named volume can be a bind of "/" in disguise).
func checkSource(src *mounts.Source, table mounts.MountTable, recursive bool, check func(string) error) error {
	if err := check(src.Path); err != nil {
		return err
	}
	origins, err := src.Origins(table, recursive)
	if err != nil {
		return err
	}
	for _, o := range origins {
		err := check(o)
		var refused *policy.RefusedError
		if errors.As(err, &refused) {
			refused.Via = src.Path
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkOverlay judges an overlay mount of the spec by its layers. The
// container's init mounts it by the layers' names, later: like every
// check of a path that moat does not hold open, it relies on the bundle's
// author (root) not to race it; docker and CRI never ask for one.
func checkOverlay(mnt *specs.Mount, check func(string) error) error {
	layers, err := mounts.OverlayLayers(mnt.Options)
	if err != nil {
		return err
	}
	for _, l := range layers {
		if err := check(l); err != nil {
			return err
		}
	}
	return nil
}

// mountPolicy is the mount policy the config file describes.
func mountPolicy(cfg *config.Config) (*policy.Policy, error) {
	p, err := policy.NewPolicy(policy.Policy{
		Restricted:   cfg.RestrictedPaths(),
		Exceptions:   cfg.RestrictedExceptions(),
		Strict:       cfg.Mounts.Strict,
		Allowed:      cfg.AllowedPaths(),
		Sockets:      cfg.EngineSockets(),
		SocketImages: cfg.Docker.SocketImages,
	})
	if err != nil {
		return nil, fmt.Errorf("mount policy of %s: %w", cfg.Path, err)
	}
	return p, nil
}

// mountCheck judges bind sources for container id. The image is looked up
// only if a source needs it: reading docker's reference store costs
// something, and most containers never mount an engine socket.
func mountCheck(p *policy.Policy, spec *specs.Spec, id string, joined []string, dockerRoot string) func(string) error {
	ctx := policy.Context{ContainerID: id, SandboxID: spec.Annotations[engine.CRISandboxID], Joined: joined}
	looked := false
	return func(source string) error {
		err := p.Check(source, ctx)
		if err == nil || looked {
			return err
		}
		// Refused without an image: try again with it, once known.
		looked = true
		img, ierr := engine.ImageOf(spec, id, dockerRoot)
		if ierr != nil {
			logrus.Warnf("establish the image of %s: %v", id, ierr)
		}
		if img == nil {
			return err
		}
		ctx.Image = &policy.Image{ID: img.ID, Names: img.Names}
		return p.Check(source, ctx)
	}
}

// stageSysfs gives a container that joins a network namespace owned by the
// host's user namespace (netns, a pod's, made by the CNI plugin) the sysfs
// of that namespace, made by moat: the container's root may not mount it
// there.
func (r *Runtime) stageSysfs(spec *specs.Spec, id, netns string) error {
	if netns == "" {
		return nil
	}
	for i := range spec.Mounts {
		m := &spec.Mounts[i]
		if m.Type != "sysfs" {
			continue
		}
		target := filepath.Join(r.bindsDir(r.root, id), "sysfs-"+strconv.Itoa(i))
		if err := mounts.StageSysfs(netns, target); err != nil {
			return err
		}
		policy.StagedSysfs(m, target)
	}
	return nil
}
