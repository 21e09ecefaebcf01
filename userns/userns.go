// Package userns owns moat's host-wide allocation of exclusive host ID ranges:
// every container gets its own 64K-wide range of uids and gids, taken from
// the "moat" entry of /etc/subuid and /etc/subgid, recorded in one state file
// for the whole host and freed on delete or by recovery.
//
// All changes happen under an flock on a lock file in the state directory and
// are written by atomic rename, so a process killed at any point leaves either
// the old state or the new one. Nothing is flushed to disk: the state only
// describes containers of the running boot. A range is handed out only after it is on
// disk, and it is reclaimed only when its owner is neither alive (as the
// caller judges) nor still being created by the process that allocated it.
package userns

import (
	"errors"
	"fmt"
	"sort"
)

// Defaults of Config.
const (
	DefaultStateDir   = "/var/lib/moat/userns"
	DefaultSubUIDFile = "/etc/subuid"
	DefaultSubGIDFile = "/etc/subgid"
	DefaultUser       = "moat"
	DefaultSize       = 65536
	DefaultCount      = 4096
)

// firstStart is where a new moat entry may begin at the lowest: shadow's
// useradd hands out subordinate IDs from 100000 up, and below it lie the
// host's own users.
const firstStart = 100000

// maxID bounds every range: (uint32)-1 is the invalid ID and must never be
// mapped.
const maxID = 1<<32 - 1

var (
	// ErrExhausted is returned by Allocate when every range is in use.
	ErrExhausted = errors.New("ID range pool exhausted")
	// ErrInUse is returned by Allocate when the owner already holds a range.
	ErrInUse = errors.New("ID range already allocated")
	// ErrNotAllocated is returned by Join when no range starts at the uid.
	ErrNotAllocated = errors.New("ID range not allocated")
)

// Owner identifies who holds a range: a container (Root and ID, unique on the
// host) and the process that allocated it, which keeps the range from being
// reclaimed while the container is still being created.
type Owner struct {
	// Root is the runtime's state root, ID the container ID under it.
	Root, ID string
	// PID is the allocating process and PIDStart its start time
	// (ProcessStart), which tells it apart from a later process that reuses
	// the PID.
	PID      int
	PIDStart uint64
}

// String is for messages.
func (o Owner) String() string {
	return fmt.Sprintf("%s of %s", o.ID, o.Root)
}

// Range is one allocated range: host uids [UID, UID+Size) and host gids
// [GID, GID+Size), mapped to 0..Size-1 in the container.
type Range struct {
	// Index is the range's position in the moat entry when it was allocated.
	Index int
	UID   uint32
	GID   uint32
	Size  uint32
	Owner Owner
	// Shared is set on the range of a container that joined another
	// container's namespaces: it holds that container's range, and the
	// IDs are free only once neither holds them.
	Shared bool
}

// Config configures an Allocator. Zero values take the defaults.
type Config struct {
	// StateDir holds the lock and the state file.
	StateDir string
	// SubUIDFile and SubGIDFile are the subordinate ID files.
	SubUIDFile, SubGIDFile string
	// User is the name of the entry in the subordinate ID files.
	User string
	// Size is the width of one range.
	Size uint32
	// Count is the number of ranges in a moat entry that moat adds itself.
	Count int
	// Reclaimed, if set, is called for each range reclaimed from an owner
	// that is gone, under the allocator's lock, to clean up what the
	// owner left (its mounts). It must not call the Allocator.
	Reclaimed func(Range) `json:"-"`
}

// Allocator hands out ranges. It holds no state of its own between calls,
// so any number of Allocators, in any number of processes, may share a
// StateDir.
type Allocator struct {
	cfg Config
}

// New returns an Allocator for cfg.
func New(cfg Config) *Allocator {
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	if cfg.SubUIDFile == "" {
		cfg.SubUIDFile = DefaultSubUIDFile
	}
	if cfg.SubGIDFile == "" {
		cfg.SubGIDFile = DefaultSubGIDFile
	}
	if cfg.User == "" {
		cfg.User = DefaultUser
	}
	if cfg.Size == 0 {
		cfg.Size = DefaultSize
	}
	if cfg.Count <= 0 {
		cfg.Count = DefaultCount
	}
	return &Allocator{cfg: cfg}
}

// Allocate takes the lowest free range for o and records it before
// returning. Errors are not prefixed with o.ID: callers add it. First it
// reclaims every range whose owner is gone (see
// Reclaim). alive tells whether an owner's container exists; a nil alive
// counts every owner as alive. alive runs under the allocator's lock and
// must not call the Allocator. If o.PIDStart is zero and o.PID is set, the
// start time of o.PID is filled in.
func (a *Allocator) Allocate(o Owner, alive func(Owner) bool) (Range, error) {
	return a.take(o, alive, func(st *state) (Range, error) {
		uid, err := ensureEntry(a.cfg.SubUIDFile, a.cfg.User, a.cfg.Size, a.cfg.Count)
		if err != nil {
			return Range{}, err
		}
		gid, err := ensureEntry(a.cfg.SubGIDFile, a.cfg.User, a.cfg.Size, a.cfg.Count)
		if err != nil {
			return Range{}, err
		}
		r, ok := st.lowestFree(uid, gid, a.cfg.Size)
		if !ok {
			return Range{}, a.exhausted(uid, gid)
		}
		return r, nil
	})
}

// Join records that o uses the range of the container whose host uids start
// at uid, because o joins that container's user namespace. The range stays
// allocated until both have released it. Ranges of owners that are gone are
// reclaimed first, as in Allocate.
func (a *Allocator) Join(o Owner, uid uint32, alive func(Owner) bool) (Range, error) {
	return a.take(o, alive, func(st *state) (Range, error) {
		for _, r := range st.Ranges {
			if r.UID == uid {
				r.Shared = true
				return r, nil
			}
		}
		return Range{}, fmt.Errorf("%w: no container of moat holds host uid %d", ErrNotAllocated, uid)
	})
}

// take records for o the range pick chooses, under the lock, after
// reclaiming what is gone and refusing an owner that holds one already.
func (a *Allocator) take(o Owner, alive func(Owner) bool, pick func(*state) (Range, error)) (Range, error) {
	if o.ID == "" {
		return Range{}, errors.New("take ids: empty owner id")
	}
	if o.PID > 0 && o.PIDStart == 0 {
		start, err := ProcessStart(o.PID)
		if err != nil {
			return Range{}, fmt.Errorf("take ids for %s: %w", o.ID, err)
		}
		o.PIDStart = start
	}
	var got Range
	err := a.update(func(st *state) (bool, error) {
		freed := a.reclaim(st, alive)
		if r, ok := st.get(o.Root, o.ID); ok {
			return len(freed) > 0, fmt.Errorf("%w: container %s holds uids and gids from %d and %d (duplicate container ID?)", ErrInUse, o, r.UID, r.GID)
		}
		r, err := pick(st)
		if err != nil {
			return len(freed) > 0, err
		}
		r.Owner = o
		st.Ranges = append(st.Ranges, r)
		got = r
		return true, nil
	})
	if err != nil {
		return Range{}, err
	}
	return got, nil
}

func (a *Allocator) exhausted(uid, gid subID) error {
	n := min(uid.count, gid.count) / uint64(a.cfg.Size)
	return fmt.Errorf("%w: the pool of %d ranges of %d IDs is in use; to grow it, enlarge the count of the %q entry in %s (now %s:%d:%d) and in %s (now %s:%d:%d) by %d per extra container",
		ErrExhausted, n, a.cfg.Size,
		a.cfg.User, a.cfg.SubUIDFile, a.cfg.User, uid.start, uid.count,
		a.cfg.SubGIDFile, a.cfg.User, gid.start, gid.count, a.cfg.Size)
}

// Release frees the range of the container id under root and reports
// whether there was one. Releasing what is not allocated is not an error.
func (a *Allocator) Release(root, id string) (bool, error) {
	var held bool
	err := a.update(func(st *state) (bool, error) {
		held = st.remove(root, id)
		return held, nil
	})
	return held, err
}

// Get returns the range of the container id under root, if it has one.
func (a *Allocator) Get(root, id string) (Range, bool, error) {
	st, err := a.read()
	if err != nil {
		return Range{}, false, err
	}
	r, ok := st.get(root, id)
	return r, ok, nil
}

// List returns every allocated range, lowest host uid first.
func (a *Allocator) List() ([]Range, error) {
	st, err := a.read()
	if err != nil {
		return nil, err
	}
	rs := append([]Range(nil), st.Ranges...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].UID < rs[j].UID })
	return rs, nil
}

// Reclaim frees every range whose owner is gone and returns what it freed.
// An owner is gone when alive reports false and its allocating process (PID
// with the same PIDStart) no longer runs; a nil alive frees nothing.
func (a *Allocator) Reclaim(alive func(Owner) bool) ([]Range, error) {
	var freed []Range
	err := a.update(func(st *state) (bool, error) {
		freed = a.reclaim(st, alive)
		return len(freed) > 0, nil
	})
	if err != nil {
		return nil, fmt.Errorf("reclaim ids: %w", err)
	}
	return freed, nil
}

// reclaim frees the ranges of owners that are gone and lets the caller clean
// up after each.
func (a *Allocator) reclaim(st *state, alive func(Owner) bool) []Range {
	freed := st.reclaim(alive)
	if a.cfg.Reclaimed != nil {
		for _, r := range freed {
			a.cfg.Reclaimed(r)
		}
	}
	return freed
}
