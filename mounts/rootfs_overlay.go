package mounts

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"

	"github.com/moatrt/moat/idmap"
)

// keptOptions are the options of the source overlay that change how its
// layers are read or written, so the new overlay must use them too. The
// rest are per mount (xino) or chosen here: index is always off, since the
// source mount holds the upper dir "in use" and overlay refuses a second
// user of it with index=on (EBUSY); nfs_export needs the index.
var keptOptions = map[string]bool{
	"redirect_dir": true,
	"metacopy":     true,
	"verity":       true,
	"volatile":     true,
	"userxattr":    true,
	"uuid":         true,
}

// overlayAt returns the layers of the overlay mounted at dir, or nil if
// the top mount at dir in table is not an overlay. dir has no symlinks.
func overlayAt(dir string, table MountTable) (*idmap.Overlay, error) {
	var ms []*mountinfo.Info
	for _, m := range table {
		if m.Mountpoint == dir {
			ms = append(ms, m)
		}
	}
	m := topMount(ms)
	if m == nil || m.FSType != "overlay" {
		return nil, nil
	}
	if m.Root != "/" {
		return nil, fmt.Errorf("rootfs %s is a bind mount of %s inside an overlay, not an overlay mount", dir, m.Root)
	}
	// Docker's overlay2 may give lowerdir as l/<short id> (and with very
	// many layers upperdir and workdir as <id>/diff, <id>/work), relative
	// to its overlay2 dir, the parent of <id>/merged.
	ov, err := parseOverlay(m.VFSOptions, filepath.Dir(filepath.Dir(dir)))
	if err != nil {
		return nil, fmt.Errorf("overlay at %s: %w", dir, err)
	}
	// The mount holds its layers, but moat reopens them by name. Podman
	// with --uidmap or --userns mounts the overlay from ID-mapped layers
	// it unmounts right after.
	for _, p := range append(slices.Clip(ov.Lower), ov.Upper) {
		if _, err := os.Stat(p); p != "" && errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("overlay at %s: layer %s is missing: the overlay may have been made from ID-mapped layers unmounted since, as podman does for --uidmap and --userns, which moat cannot rebuild (moat maps every container itself)", dir, p)
		}
	}
	return ov, nil
}

// topMount returns the mount that is visible where several are stacked on
// one mount point: the one that no other of them is mounted on.
func topMount(ms []*mountinfo.Info) *mountinfo.Info {
	parents := map[int]bool{}
	for _, m := range ms {
		parents[m.Parent] = true
	}
	for _, m := range ms {
		if !parents[m.ID] {
			return m
		}
	}
	return nil
}

// overlayOption is one option of an overlay mount, its value unescaped.
// For a layer option (lowerdir, lowerdir+, datadir+, upperdir, workdir),
// layers are the paths it names; in lowerdir, an empty one marks "::",
// where the data-only layers start.
type overlayOption struct {
	key, opt string // opt is the option as given
	layers   []string
}

// overlayOptions splits an overlay's options. Values in mountinfo have
// the kernel's \NNN escapes (commas, spaces and backslashes): unescape
// undoes them there; options from a spec are given as they are.
func overlayOptions(opts []string, unescape func(string) string) []overlayOption {
	out := make([]overlayOption, 0, len(opts))
	for _, opt := range opts {
		key, val, _ := strings.Cut(opt, "=")
		val = unescape(val)
		o := overlayOption{key: key, opt: opt}
		switch key {
		case "lowerdir":
			for _, l := range splitLowerdir(val) {
				o.layers = append(o.layers, unescapeBackslash(l))
			}
		case "upperdir", "workdir":
			o.layers = []string{unescapeBackslash(val)}
		case "lowerdir+", "datadir+":
			o.layers = []string{val}
		}
		out = append(out, o)
	}
	return out
}

// parseOverlay reads an overlay's layers and options from its mountinfo
// super options, resolving relative layer paths against base.
func parseOverlay(opts, base string) (*idmap.Overlay, error) {
	ov := &idmap.Overlay{Options: []string{"index=off"}}
	layer := func(p string) (string, error) {
		if p == "" {
			return "", errors.New("empty layer path")
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(base, p)
		}
		// Layers given as file descriptors show as paths inside their
		// detached mounts ("/", "/upper"): never take the host's root.
		if p == "/" {
			return "", errors.New(`layer "/": the overlay was made from file descriptors and cannot be rebuilt`)
		}
		return filepath.Clean(p), nil
	}
	for _, o := range overlayOptions(strings.Split(opts, ","), unescapeOctal) {
		switch {
		case o.key == "lowerdir" || o.key == "lowerdir+":
			if o.key == "lowerdir" && slices.Contains(o.layers, "") {
				return nil, errors.New("data-only lower layers are not supported")
			}
			for _, l := range o.layers {
				p, err := layer(l)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", o.key, err)
				}
				ov.Lower = append(ov.Lower, p)
			}
		case o.key == "datadir+":
			return nil, errors.New("data-only lower layers are not supported")
		case o.key == "upperdir":
			p, err := layer(o.layers[0])
			if err != nil {
				return nil, fmt.Errorf("upperdir: %w", err)
			}
			ov.Upper = p
		case keptOptions[o.key]:
			ov.Options = append(ov.Options, o.opt)
		}
	}
	if len(ov.Lower) == 0 {
		return nil, fmt.Errorf("no lower layer in %q", opts)
	}
	return ov, nil
}

// splitLowerdir splits a lowerdir value on the colons that are not escaped
// with a backslash, keeping the escapes.
func splitLowerdir(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case ':':
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unescapeBackslash removes the backslash escapes overlay accepts in layer
// paths ("\:", "\,", "\\").
func unescapeBackslash(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unescapeOctal undoes the kernel's \NNN escaping in mountinfo.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
