package mounts

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/policy"
)

// The policy judges paths, and a path can be a window onto another part
// of the host: docker's local volume driver mounts whatever its options
// say on <data-root>/volumes/<name>/_data (a bind of "/", the host's disk,
// an overlay of /etc), and that path is exempt as a volume. So a source is
// also judged by the other host paths of the object it holds. They are
// found from the mount the open file is on: its filesystem, and the root
// of that mount within it, which the kernel names whatever the caller
// called things. A source on an overlay is judged by the overlay's layers.

// MountTable is a snapshot of this mount namespace's mounts.
type MountTable []*mountinfo.Info

// ReadMountTable reads the mount table once, for the Origins of every
// source of a container.
func ReadMountTable() (MountTable, error) {
	ms, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return ms, nil
}

// Without returns the table less the mounts at or under dir: the
// runtime's own staging area, whose mounts are clones of sources already
// judged and no view a user has of the host.
func (t MountTable) Without(dir string) MountTable {
	out := make(MountTable, 0, len(t))
	for _, m := range t {
		if !policy.PathWithin(m.Mountpoint, dir) {
			out = append(out, m)
		}
	}
	return out
}

// Origins returns the host paths, other than s.Path, where the object s
// holds can be reached, or where it comes from (an overlay's layers): each
// must pass the policy too. With recursive (rbind), the mounts under the
// source, which come along, are included.
func (s *Source) Origins(t MountTable, recursive bool) ([]string, error) {
	if s.f == nil {
		return nil, fmt.Errorf("origins of %s: source is closed", s.Path)
	}
	var st unix.Statx_t
	if err := unix.Statx(int(s.f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &st); err != nil {
		return nil, fmt.Errorf("origins of %s: statx: %w", s.Path, err)
	}
	return origins(s.Path, st.Mnt_id, t, recursive)
}

func origins(path string, mntID uint64, t MountTable, recursive bool) ([]string, error) {
	var on *mountinfo.Info
	for _, m := range t {
		if uint64(m.ID) == mntID {
			on = m
		}
	}
	if on == nil {
		return nil, fmt.Errorf("origins of %s: its mount %d is not in mountinfo", path, mntID)
	}
	if !policy.PathWithin(path, on.Mountpoint) {
		return nil, fmt.Errorf("origins of %s: not under its mount point %s", path, on.Mountpoint)
	}
	out, err := mountOrigins(on, within(on.Root, path, on.Mountpoint), path, t)
	if err != nil {
		return nil, err
	}
	if recursive {
		for _, m := range t {
			if m.Mountpoint != path && policy.PathWithin(m.Mountpoint, path) {
				o, err := mountOrigins(m, m.Root, path, t)
				if err != nil {
					return nil, err
				}
				out = append(out, o...)
			}
		}
	}
	return out, nil
}

// within maps path, under the mount point mp of a mount whose root is
// root, to its path inside the mount's filesystem.
func within(root, path, mp string) string {
	rel := strings.TrimPrefix(path, mp)
	if mp == "/" {
		rel = path
	}
	return filepath.Join(root, rel)
}

// mountOrigins returns where the object at obj (a path inside m's
// filesystem) lives on the host, other than under source: at the other
// mounts of the same filesystem whose root holds it (those with the
// shortest root, the widest view, which is "/" wherever the filesystem is
// mounted whole), or in the layers of an overlay. An anonymous filesystem
// (tmpfs, a disk mounted only there) has no other host path.
func mountOrigins(m *mountinfo.Info, obj, source string, t MountTable) ([]string, error) {
	if m.FSType == "overlay" && m.Mountpoint != "/" {
		layers, err := overlayLayers(strings.Split(m.VFSOptions, ","), unescapeOctal)
		if err != nil {
			return nil, fmt.Errorf("overlay at %s: %w", m.Mountpoint, err)
		}
		// The layers are named as the overlay's mounter gave them, maybe
		// through symlinks: judge where they lead. (moat cannot ID-map an
		// overlay, so such a source never mounts; this is for the message,
		// which must name the restricted layer.)
		var out []string
		for _, l := range layers {
			r, err := policy.ResolveExisting(filepath.Join(l, obj), filepath.EvalSymlinks)
			if err != nil {
				return nil, fmt.Errorf("overlay at %s: %w", m.Mountpoint, err)
			}
			out = append(out, r)
		}
		return out, nil
	}
	var best []*mountinfo.Info
	for _, h := range t {
		if h.ID == m.ID || h.Major != m.Major || h.Minor != m.Minor ||
			!policy.PathWithin(obj, h.Root) || policy.PathWithin(h.Mountpoint, source) {
			continue
		}
		if len(best) > 0 && len(h.Root) > len(best[0].Root) {
			continue
		}
		if len(best) > 0 && len(h.Root) < len(best[0].Root) {
			best = best[:0]
		}
		best = append(best, h)
	}
	var out []string
	for _, h := range best {
		p := filepath.Join(h.Mountpoint, strings.TrimPrefix(obj, strings.TrimSuffix(h.Root, "/")))
		if p != source {
			out = append(out, p)
		}
	}
	return out, nil
}

// overlayLayers returns every layer path an overlay's options name (lower,
// upper and work dirs): what it shows, and what it writes to.
func overlayLayers(opts []string, unescape func(string) string) ([]string, error) {
	var out []string
	for _, o := range overlayOptions(opts, unescape) {
		for _, l := range o.layers {
			if l == "" {
				continue // "::" before data-only layers
			}
			if !filepath.IsAbs(l) {
				return nil, fmt.Errorf("layer %q is not an absolute path", l)
			}
			out = append(out, l)
		}
	}
	return out, nil
}

// OverlayLayers returns the real paths of the layers that the options of
// an overlay mount in a spec name, for the policy to judge: such a mount
// shows its lower layers and writes to its upper one.
func OverlayLayers(options []string) ([]string, error) {
	paths, err := overlayLayers(options, func(s string) string { return s })
	if err != nil {
		return nil, err
	}
	for i, p := range paths {
		if paths[i], err = policy.ResolveExisting(filepath.Clean(p), filepath.EvalSymlinks); err != nil {
			return nil, err
		}
	}
	return paths, nil
}
