package userns

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

const (
	lockName  = "lock"
	stateName = "state.json"
	// stateVersion is bumped on any change of the file's meaning; a file of
	// another version is refused rather than guessed at.
	stateVersion = 1
)

// stateFile is the on-disk form, kept apart from the API types so that
// either may change without the other.
type stateFile struct {
	Version     int          `json:"version"`
	Allocations []allocation `json:"allocations"`
}

type allocation struct {
	Index int       `json:"index"`
	UID   uint32    `json:"uid"`
	GID   uint32    `json:"gid"`
	Size  uint32    `json:"size"`
	Key   string    `json:"key"`
	Owner ownerFile `json:"owner"`
	// Shared marks a second holder of another allocation's range.
	Shared bool `json:"shared,omitempty"`
}

type ownerFile struct {
	Root     string `json:"root"`
	ID       string `json:"id"`
	PID      int    `json:"pid"`
	PIDStart uint64 `json:"pid_start"`
}

// state is the decoded allocation state.
type state struct {
	Ranges []Range
}

func (a *Allocator) statePath() string {
	return filepath.Join(a.cfg.StateDir, stateName)
}

// update runs fn on the state under the host-wide lock and, if fn reports a
// change, replaces the state file. The change is saved even when fn also
// returns an error (Allocate may have reclaimed ranges before failing).
func (a *Allocator) update(fn func(*state) (bool, error)) error {
	if err := os.MkdirAll(a.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	unlock, err := lock(filepath.Join(a.cfg.StateDir, lockName))
	if err != nil {
		return err
	}
	defer unlock()

	st, err := a.read()
	if err != nil {
		return err
	}
	changed, fnErr := fn(st)
	if changed {
		if err := a.write(st); err != nil {
			return errors.Join(fnErr, err)
		}
	}
	return fnErr
}

// lock takes an exclusive flock on path. The kernel drops it when the
// process dies, so a killed holder never blocks the host. flock (unlike
// fcntl locks) is per open file description, so it also excludes other
// goroutines of this process that open the file themselves.
func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Closing the file releases the lock.
	return func() { f.Close() }, nil
}

// read loads the state. Readers need no lock: the file is only ever
// replaced by rename, so they see one complete version or the other.
func (a *Allocator) read() (*state, error) {
	path := a.statePath()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &state{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read id allocation state: %w", err)
	}
	st, err := decode(data)
	if err != nil && fromEarlierBoot(path) {
		// Only a crash of the machine tears a file replaced by rename,
		// and no container of an earlier boot is left.
		return &state{}, nil
	}
	if err != nil {
		// Wiping it could hand a range in use to a second container.
		return nil, fmt.Errorf("id allocation state %s is not valid (%w); it was left as is: repair it, or remove it only once no container of moat is left", path, err)
	}
	return st, nil
}

func decode(data []byte) (*state, error) {
	var f stateFile
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the state")
	}
	if f.Version != stateVersion {
		return nil, fmt.Errorf("unknown version %d, want %d", f.Version, stateVersion)
	}
	st := &state{Ranges: make([]Range, 0, len(f.Allocations))}
	keys := make(map[string]bool, len(f.Allocations))
	for _, al := range f.Allocations {
		o := Owner{Root: al.Owner.Root, ID: al.Owner.ID, PID: al.Owner.PID, PIDStart: al.Owner.PIDStart}
		switch {
		case al.Size == 0:
			return nil, fmt.Errorf("allocation of %s has size 0", o)
		case uint64(al.UID)+uint64(al.Size) > maxID, uint64(al.GID)+uint64(al.Size) > maxID:
			return nil, fmt.Errorf("allocation of %s runs past the last id", o)
		case al.Key != o.Key():
			return nil, fmt.Errorf("allocation key %q does not match its owner %s", al.Key, o)
		case keys[al.Key]:
			return nil, fmt.Errorf("owner %s holds two allocations", o)
		}
		keys[al.Key] = true
		st.Ranges = append(st.Ranges, Range{Index: al.Index, UID: al.UID, GID: al.GID, Size: al.Size, Owner: o, Shared: al.Shared})
	}
	if err := checkDisjoint(st.Ranges, func(r Range) uint32 { return r.UID }); err != nil {
		return nil, fmt.Errorf("uids: %w", err)
	}
	if err := checkDisjoint(st.Ranges, func(r Range) uint32 { return r.GID }); err != nil {
		return nil, fmt.Errorf("gids: %w", err)
	}
	return st, nil
}

// checkDisjoint refuses a state in which two owners share IDs, which would
// mean the isolation is already broken, unless one of them joined the
// other's namespaces and so holds exactly the same range on purpose.
func checkDisjoint(rs []Range, start func(Range) uint32) error {
	s := append([]Range(nil), rs...)
	sort.SliceStable(s, func(i, j int) bool { return start(s[i]) < start(s[j]) })
	for i := 1; i < len(s); i++ {
		a, b := s[i-1], s[i]
		if a.UID == b.UID && a.GID == b.GID && a.Size == b.Size && (a.Shared || b.Shared) {
			continue
		}
		if uint64(start(s[i-1]))+uint64(s[i-1].Size) > uint64(start(s[i])) {
			return fmt.Errorf("ranges of %s and %s overlap", s[i-1].Owner, s[i].Owner)
		}
	}
	return nil
}

func (a *Allocator) write(st *state) error {
	f := stateFile{Version: stateVersion, Allocations: make([]allocation, 0, len(st.Ranges))}
	sort.SliceStable(st.Ranges, func(i, j int) bool { return st.Ranges[i].UID < st.Ranges[j].UID })
	for _, r := range st.Ranges {
		f.Allocations = append(f.Allocations, allocation{
			Index: r.Index, UID: r.UID, GID: r.GID, Size: r.Size, Key: r.Owner.Key(),
			Owner:  ownerFile{Root: r.Owner.Root, ID: r.Owner.ID, PID: r.Owner.PID, PIDStart: r.Owner.PIDStart},
			Shared: r.Shared,
		})
	}
	data, err := encodeState(f)
	if err != nil {
		return err
	}
	// A fixed temp name is safe under the lock, and a temp file left by a
	// killed holder is simply overwritten by the next one.
	if err := writeAtomic(a.statePath(), a.statePath()+".tmp", data, 0o600); err != nil {
		return fmt.Errorf("write id allocation state: %w", err)
	}
	return nil
}

// encodeState writes the state as JSON with one allocation per line: as
// readable as indented JSON, without indenting's second pass over a file
// that every create rewrites and that grows with the containers running.
func encodeState(f stateFile) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\"version\":%d,\"allocations\":[", f.Version)
	for i, al := range f.Allocations {
		line, err := json.Marshal(al)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
		b.Write(line)
	}
	b.WriteString("\n]}\n")
	return b.Bytes(), nil
}

// fromEarlierBoot tells whether the file at path was last written before
// the machine booted.
func fromEarlierBoot(path string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	var up unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &up); err != nil {
		return false
	}
	booted := time.Now().Add(-time.Duration(up.Nano()))
	return fi.ModTime().Before(booted)
}

// writeAtomic replaces path with data through tmp: readers and a process
// killed at any point see the old content or the new one. There is no
// fsync: the state describes running containers, which a power loss ends
// too, and read takes a file torn by one for the empty state it stands
// for. That keeps two disk flushes off every create and delete.
func writeAtomic(path, tmp string, data []byte, mode os.FileMode) (retErr error) {
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// The mode of an existing temp file, and the umask, would otherwise win.
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (st *state) get(key string) (Range, bool) {
	for _, r := range st.Ranges {
		if r.Owner.Key() == key {
			return r, true
		}
	}
	return Range{}, false
}

func (st *state) remove(key string) bool {
	for i, r := range st.Ranges {
		if r.Owner.Key() == key {
			st.Ranges = append(st.Ranges[:i], st.Ranges[i+1:]...)
			return true
		}
	}
	return false
}

// reclaim drops the ranges of owners that are gone and returns them.
func (st *state) reclaim(alive func(Owner) bool) []Range {
	if alive == nil {
		return nil
	}
	var kept, freed []Range
	for _, r := range st.Ranges {
		if alive(r.Owner) || processRunning(r.Owner.PID, r.Owner.PIDStart) {
			kept = append(kept, r)
		} else {
			freed = append(freed, r)
		}
	}
	st.Ranges = kept
	return freed
}

// lowestFree returns the lowest range of the moat entries that shares no
// uid and no gid with any allocation. Allocations are compared by the IDs
// they hold, not by index, so a moat entry that was moved or resized never
// hands out IDs still in use.
func (st *state) lowestFree(uid, gid subID, size uint32) (Range, bool) {
	sz := uint64(size)
	n := min(uid.count, gid.count) / sz
	taken := make(map[uint64]bool, len(st.Ranges))
	mark := func(base, start, length uint64) {
		end := start + length // exclusive
		if end <= base || length == 0 {
			return
		}
		first := (max(start, base) - base) / sz
		last := min((end-1-base)/sz, n)
		for i := first; i <= last; i++ {
			taken[i] = true
		}
	}
	for _, r := range st.Ranges {
		mark(uid.start, uint64(r.UID), uint64(r.Size))
		mark(gid.start, uint64(r.GID), uint64(r.Size))
	}
	for i := uint64(0); i < n; i++ {
		if !taken[i] {
			return Range{Index: int(i), UID: uint32(uid.start + i*sz), GID: uint32(gid.start + i*sz), Size: size}, true
		}
	}
	return Range{}, false
}
