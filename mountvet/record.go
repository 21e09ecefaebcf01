package mountvet

// Record is what must outlive the helper process of one container's
// mounts: which were there at the start and which the container made,
// so that a helper started after a crash decides as the one before did.
type Record struct {
	ID      string       `json:"id"`
	Initial []KnownMount `json:"initial"`
	Own     []KnownMount `json:"own,omitempty"`
	Guards  []KnownMount `json:"guards,omitempty"`
	Views   []FSView     `json:"views,omitempty"`
}

// KnownMount is one mount of a Record.
type KnownMount struct {
	MountID int    `json:"mnt"`
	Dev     string `json:"dev"`
	Root    string `json:"root"`
	Locks   uint64 `json:"locks,omitempty"`
	NS      uint64 `json:"ns,omitempty"` // guards: its mount namespace
}

// Record returns c's record and its generation, which changes whenever
// the record does.
func (c *Container) Record() (Record, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := Record{ID: c.ID, Initial: listOf(c.initial), Own: listOf(c.own)}
	for id, g := range c.guards {
		r.Guards = append(r.Guards, KnownMount{MountID: id, Dev: g.ref.dev, Root: g.ref.root, Locks: uint64(g.locks), NS: g.ns})
	}
	for _, v := range c.views {
		r.Views = append(r.Views, v)
	}
	return r, c.gen
}

// Generation changes whenever c's record does.
func (c *Container) Generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// Restore is the Container that r records.
func Restore(r Record) *Container {
	c := &Container{ID: r.ID, initial: mapOf(r.Initial), own: mapOf(r.Own), guards: map[int]guard{}, views: map[string]FSView{}, workers: map[uint64]*worker{}}
	for _, g := range r.Guards {
		c.guards[g.MountID] = guard{known: known{ref: mountRef{dev: g.Dev, root: g.Root}, locks: lock(g.Locks)}, ns: g.NS}
	}
	for _, v := range r.Views {
		c.views[v.FSType] = v
	}
	return c
}

func listOf(m map[int]known) []KnownMount {
	out := make([]KnownMount, 0, len(m))
	for id, k := range m {
		out = append(out, KnownMount{MountID: id, Dev: k.ref.dev, Root: k.ref.root, Locks: uint64(k.locks)})
	}
	return out
}

func mapOf(l []KnownMount) map[int]known {
	m := make(map[int]known, len(l))
	for _, k := range l {
		m[k.MountID] = known{ref: mountRef{dev: k.Dev, root: k.Root}, locks: lock(k.Locks)}
	}
	return m
}
