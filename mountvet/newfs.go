package mountvet

import (
	"fmt"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// FSView is how the container's own proc or sysfs looks when its init
// starts: the flags it is locked with and what is mounted on it (the
// masks, the read-only paths, cgroup hierarchies). A proc or sysfs the
// container mounts later gets the same, before it can see it.
type FSView struct {
	FSType string      `json:"fstype"`
	Base   string      `json:"base"` // its mount point, as the init sees it
	Locks  uint64      `json:"locks,omitempty"`
	Subs   []ViewMount `json:"subs,omitempty"`
}

// ViewMount is one mount on an FSView, parents before children.
type ViewMount struct {
	Rel string `json:"rel"` // its mount point below Base
	// Self, for a bind of a directory of the same filesystem (a read-only
	// path), is that directory; otherwise the mount is copied from where
	// the caller sees it, Base/Rel.
	Self  string `json:"self,omitempty"`
	Locks uint64 `json:"locks,omitempty"`
}

// viewBases are the filesystems a container may mount anew only with its
// masks, at the place an OCI runtime mounts them.
var viewBases = map[string]string{"proc": "/proc", "sysfs": "/sys"}

// viewsOf finds the container's proc and sysfs in its init's mounts.
func viewsOf(ms []*mountinfo.Info) map[string]FSView {
	views := map[string]FSView{}
	for fstype, base := range viewBases {
		var fs *mountinfo.Info
		for _, m := range ms {
			if m.FSType == fstype && m.Mountpoint == base && m.Root == "/" {
				fs = m // the last one: it is on top
			}
		}
		if fs == nil {
			continue
		}
		v := FSView{FSType: fstype, Base: base, Locks: uint64(flagsOf(fs.Options))}
		for _, m := range ms {
			rel, ok := strings.CutPrefix(m.Mountpoint, base+"/")
			if !ok || m.ID == fs.ID {
				continue
			}
			vm := ViewMount{Rel: rel, Locks: uint64(flagsOf(m.Options))}
			if m.Major == fs.Major && m.Minor == fs.Minor {
				vm.Self = strings.TrimPrefix(m.Root, "/")
				if vm.Self == "" {
					vm.Self = "."
				}
			}
			v.Subs = append(v.Subs, vm)
		}
		sort.SliceStable(v.Subs, func(i, j int) bool {
			return strings.Count(v.Subs[i].Rel, "/") < strings.Count(v.Subs[j].Rel, "/")
		})
		views[fstype] = v
	}
	return views
}

// attrsOf turns locks into mount attributes.
func attrsOf(l lock) uint64 {
	set, _ := mountAttrs(uintptr(l))
	return set
}

// newFS mounts a new proc or sysfs as the caller, built where nobody sees
// it with the masks, read-only paths and flags of the container's own,
// and protects what it put on it.
func (c *Container) newFS(w *worker, cl *caller, k *call) (unix.Errno, string) {
	v, ok := c.views[*k.fstype]
	if !ok {
		return unix.EPERM, fmt.Sprintf("the container started with no %s at %s to copy the masks of", *k.fstype, viewBases[*k.fstype])
	}
	q := request{op: opNewFS, target: *k.target, fstype: k.fstype, data: k.data}
	q.attrSet = attrsOf(lock(k.flags&lockable) | lock(v.Locks))
	if k.flags&unix.MS_NOSYMFOLLOW != 0 {
		q.attrSet |= unix.MOUNT_ATTR_NOSYMFOLLOW
	}
	for _, s := range v.Subs {
		st := step{dst: s.Rel, attr: attrsOf(lock(s.Locks))}
		if s.Self != "" {
			st.self = s.Self
		} else {
			st.src = v.Base + "/" + s.Rel
		}
		q.steps = append(q.steps, st)
	}
	res, _ := w.call(cl, q)
	if e, why := res.outcome(); e != 0 {
		return e, why
	}
	t, err := c.table(cl)
	top := t[res.newMount.id]
	if err != nil || top == nil {
		// Mounted, but its masks cannot be protected: take it away.
		u := request{op: opUmount, target: *k.target, flags: unix.MNT_DETACH}
		if r, e, _ := c.resolve(w, cl, u); e == 0 {
			w.verdict(r.target.id == res.newMount.id)
		}
		return unix.EPERM, "new " + *k.fstype + ": cannot read the caller's mounts to protect its masks"
	}
	c.own[top.ID] = known{ref: refOf(top), locks: lock(v.Locks)}
	for _, m := range t {
		if m.ID != top.ID && below(t, m, top.ID) {
			c.guards[m.ID] = guard{known: known{ref: refOf(m), locks: flagsOf(m.Options)}, ns: cl.mntNS}
		}
	}
	c.gen++
	return 0, "done"
}

// below reports whether m is mounted, at any depth, on mount id.
func below(t map[int]*mountinfo.Info, m *mountinfo.Info, id int) bool {
	for depth := 0; m != nil && depth < len(t); depth++ {
		if m.Parent == id {
			return true
		}
		if m.Parent == m.ID {
			return false
		}
		m = t[m.Parent]
	}
	return false
}

// pruneGuards forgets the guarded mounts of mount namespace ns that are
// gone from its table t.
func (c *Container) pruneGuards(ns uint64, t map[int]*mountinfo.Info) {
	for id, g := range c.guards {
		if g.ns == ns && t[id] == nil {
			delete(c.guards, id)
			c.gen++
		}
	}
}

func (c *Container) guardsIn(ns uint64) bool {
	for _, g := range c.guards {
		if g.ns == ns {
			return true
		}
	}
	return false
}
