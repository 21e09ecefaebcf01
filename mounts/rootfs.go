// Package mounts assembles a container's root filesystem from ID-mapped
// mounts, on top of package idmap, and takes it apart again.
package mounts

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/idmap"
)

// workName is the overlay work directory moat makes beside the container's
// upper layer. Docker's own overlay stays mounted on the same upper and
// overlay empties its work dir at mount time, so the two mounts must not
// share one.
const workName = "moat-work"

// Rootfs makes target show source ID-mapped with the given mapping. If source
// is an overlay mount (docker's overlay2, containerd's overlayfs snapshotter),
// target gets an overlay of its own over the same layers, each ID-mapped,
// and source is left alone; a plain directory gets an ID-mapped bind. On
// error nothing is left mounted or created.
func Rootfs(source, target string, uids, gids []idmap.Mapping) (retErr error) {
	if len(uids) == 0 || len(gids) == 0 {
		return errors.New("rootfs needs a uid and a gid mapping")
	}
	if _, err := os.Stat(source); err != nil {
		return fmt.Errorf("rootfs %s: %w", source, err)
	}
	if err := os.MkdirAll(target, 0o711); err != nil {
		return fmt.Errorf("make rootfs mount point: %w", err)
	}
	defer func() {
		if retErr != nil {
			_ = Teardown(target)
		}
	}()
	userns, err := idmap.NewUserns(uids, gids)
	if err != nil {
		return err
	}
	defer userns.Close()

	ov, err := overlayAt(source)
	if err != nil {
		return err
	}
	if ov == nil {
		tree, err := idmap.CloneMapped(source, userns, true)
		if err != nil {
			return err
		}
		defer tree.Close()
		return idmap.Attach(tree, target)
	}
	if ov.Upper != "" {
		ov.Work = filepath.Join(filepath.Dir(ov.Upper), workName)
		if err := os.Mkdir(ov.Work, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("make overlay work dir: %w", err)
		}
		if err := os.WriteFile(workRecord(target), []byte(ov.Work), 0o600); err != nil {
			os.RemoveAll(ov.Work)
			return fmt.Errorf("record overlay work dir: %w", err)
		}
	}
	return idmap.MountOverlay(target, *ov, userns, hostID(uids), hostID(gids))
}

// hostID is the host ID of the container's root.
func hostID(ms []idmap.Mapping) uint32 {
	for _, m := range ms {
		if m.ContainerID == 0 {
			return m.HostID
		}
	}
	return ms[0].HostID
}

// workRecord is where Rootfs notes the work dir it made, for Teardown.
func workRecord(target string) string { return target + ".work" }

// keptOptions are the overlay options carried over from the source mount;
// the rest (layers, xino, uuid) are chosen anew or are per-mount.
var keptOptions = map[string]bool{"redirect_dir": true, "metacopy": true, "volatile": true, "nfs_export": true}

// overlayAt returns the layers of the overlay mounted at path, or nil if
// path is not an overlay mount point.
func overlayAt(path string) (*idmap.Overlay, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, err
	}
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(real))
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	if len(ms) == 0 || ms[len(ms)-1].FSType != "overlay" {
		return nil, nil
	}
	m := ms[len(ms)-1]
	// Docker passes lowerdir as l/<short id> relative to its overlay2
	// directory, the parent of the container's layer directory.
	base := filepath.Dir(filepath.Dir(real))
	ov := &idmap.Overlay{Options: []string{"index=off"}}
	for _, opt := range splitOptions(m.VFSOptions) {
		key, val, _ := strings.Cut(opt, "=")
		switch {
		case key == "lowerdir":
			for _, l := range splitLower(val) {
				if !filepath.IsAbs(l) {
					l = filepath.Join(base, l)
				}
				ov.Lower = append(ov.Lower, l)
			}
		case key == "upperdir":
			ov.Upper = val
		case keptOptions[key]:
			ov.Options = append(ov.Options, opt)
		}
	}
	if len(ov.Lower) == 0 {
		return nil, fmt.Errorf("overlay at %s: no lowerdir in %q", path, m.VFSOptions)
	}
	return ov, nil
}

// splitOptions splits mount options on commas that are not escaped.
func splitOptions(s string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			cur.WriteByte(s[i])
			cur.WriteByte(s[i+1])
			i++
		case s[i] == ',':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	return append(out, cur.String())
}

// splitLower splits a lowerdir value on unescaped colons and unescapes.
func splitLower(s string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			cur.WriteByte(s[i+1])
			i++
		case s[i] == ':':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	return append(out, cur.String())
}

// Teardown unmounts everything at or below target, deepest first, and
// removes target and the work dir Rootfs made. It is idempotent.
func Teardown(target string) error {
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(target))
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	sort.Slice(ms, func(i, j int) bool { return len(ms[i].Mountpoint) > len(ms[j].Mountpoint) })
	for _, m := range ms {
		if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount %s: %w", m.Mountpoint, err)
		}
	}
	if work, err := os.ReadFile(workRecord(target)); err == nil {
		if err := os.RemoveAll(string(work)); err != nil {
			return fmt.Errorf("remove overlay work dir: %w", err)
		}
	}
	if err := os.Remove(workRecord(target)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove rootfs mount point: %w", err)
	}
	return nil
}
