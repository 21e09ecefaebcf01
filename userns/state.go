package userns

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	lockName = "lock"
	// stateName holds the allocations, one per line (see encode).
	stateName = "ranges"
	// stateHeader opens the state file and names its format; a file of
	// another format is refused rather than guessed at.
	stateHeader = "moat id ranges 2"
	// legacyName is the JSON state of earlier versions, read until the
	// first change replaces it with stateName.
	legacyName = "state.json"
)

// state is the decoded allocation state.
type state struct {
	Ranges []Range
}

func (a *Allocator) statePath() string {
	return filepath.Join(a.cfg.StateDir, stateName)
}

func (a *Allocator) legacyPath() string {
	return filepath.Join(a.cfg.StateDir, legacyName)
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
	dec := decode
	if errors.Is(err, os.ErrNotExist) {
		// A host upgraded with containers running has only the legacy
		// file until the first change. A writer renames the new file in
		// before it removes the old, so a reader that finds neither looks
		// for the new one again.
		path = a.legacyPath()
		dec = decodeLegacy
		data, err = os.ReadFile(path)
		// A directory there is the legacy file buried (see buryLegacy).
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.EISDIR) {
			path, dec = a.statePath(), decode
			data, err = os.ReadFile(path)
		}
	}
	if errors.Is(err, os.ErrNotExist) {
		return &state{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read id allocation state: %w", err)
	}
	st, err := dec(data)
	if err == nil {
		err = check(st)
	}
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

// decode parses the state file: the header line, then one allocation per
// line as encode writes it. It is plain text rather than JSON because every
// create and delete reads and rewrites it, with as many lines as there are
// containers, and decoding JSON by reflection in a fresh process costs
// milliseconds at a few hundred.
func decode(data []byte) (*state, error) {
	text := string(data)
	header, rest, ok := strings.Cut(text, "\n")
	if !ok || header != stateHeader {
		return nil, fmt.Errorf("first line is not %q", stateHeader)
	}
	st := &state{Ranges: make([]Range, 0, strings.Count(rest, "\n"))}
	for n := 2; rest != ""; n++ {
		var line string
		line, rest, ok = strings.Cut(rest, "\n")
		if !ok {
			return nil, fmt.Errorf("line %d: no newline at the end", n)
		}
		r, err := decodeRange(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		st.Ranges = append(st.Ranges, r)
	}
	return st, nil
}

// The numeric fields of a line, in order; the owner's root and ID follow,
// quoted.
const rangeFields = "index uid gid size shared pid pid-start"

func decodeRange(line string) (Range, error) {
	var nums [7]uint64
	for i := range nums {
		field, rest, ok := strings.Cut(line, " ")
		if !ok {
			return Range{}, fmt.Errorf("want %s root id, got %q", rangeFields, line)
		}
		v, err := strconv.ParseUint(field, 10, 64)
		if err != nil {
			return Range{}, fmt.Errorf("field %d: %w", i+1, err)
		}
		nums[i] = v
		line = rest
	}
	root, line, err := unquotePrefix(line)
	if err != nil {
		return Range{}, fmt.Errorf("root: %w", err)
	}
	line, ok := strings.CutPrefix(line, " ")
	if !ok {
		return Range{}, errors.New("no container id after the root")
	}
	id, line, err := unquotePrefix(line)
	if err != nil {
		return Range{}, fmt.Errorf("container id: %w", err)
	}
	if line != "" {
		return Range{}, fmt.Errorf("trailing %q", line)
	}
	const maxInt = int(^uint(0) >> 1)
	switch {
	case nums[0] > uint64(maxInt) || nums[5] > uint64(maxInt):
		return Range{}, errors.New("index or pid out of range")
	case nums[1] > maxID || nums[2] > maxID || nums[3] > maxID:
		return Range{}, errors.New("id out of range")
	case nums[4] > 1:
		return Range{}, fmt.Errorf("shared is %d, want 0 or 1", nums[4])
	}
	return Range{
		Index: int(nums[0]), UID: uint32(nums[1]), GID: uint32(nums[2]), Size: uint32(nums[3]), Shared: nums[4] == 1,
		Owner: Owner{Root: root, ID: id, PID: int(nums[5]), PIDStart: nums[6]},
	}, nil
}

// unquotePrefix reads one Go-quoted string from the start of s.
func unquotePrefix(s string) (string, string, error) {
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", "", err
	}
	v, err := strconv.Unquote(q)
	return v, s[len(q):], err
}

// encode writes the state as decode reads it: a header line, then per
// allocation its numbers and its owner's root and ID, Go-quoted so that
// any path or ID reads back as it was.
func encode(st *state) []byte {
	b := make([]byte, 0, len(stateHeader)+1+len(st.Ranges)*160)
	b = append(b, stateHeader...)
	b = append(b, '\n')
	for _, r := range st.Ranges {
		shared := uint64(0)
		if r.Shared {
			shared = 1
		}
		for _, v := range []uint64{uint64(r.Index), uint64(r.UID), uint64(r.GID), uint64(r.Size), shared, uint64(r.Owner.PID), r.Owner.PIDStart} {
			b = strconv.AppendUint(b, v, 10)
			b = append(b, ' ')
		}
		b = strconv.AppendQuote(b, r.Owner.Root)
		b = append(b, ' ')
		b = strconv.AppendQuote(b, r.Owner.ID)
		b = append(b, '\n')
	}
	return b
}

// legacyFile is the JSON state of earlier versions.
type legacyFile struct {
	Version     int `json:"version"`
	Allocations []struct {
		Index int    `json:"index"`
		UID   uint32 `json:"uid"`
		GID   uint32 `json:"gid"`
		Size  uint32 `json:"size"`
		Key   string `json:"key"`
		Owner struct {
			Root     string `json:"root"`
			ID       string `json:"id"`
			PID      int    `json:"pid"`
			PIDStart uint64 `json:"pid_start"`
		} `json:"owner"`
		Shared bool `json:"shared,omitempty"`
	} `json:"allocations"`
}

func decodeLegacy(data []byte) (*state, error) {
	var f legacyFile
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the state")
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("unknown version %d, want 1", f.Version)
	}
	st := &state{Ranges: make([]Range, 0, len(f.Allocations))}
	for _, al := range f.Allocations {
		o := Owner{Root: al.Owner.Root, ID: al.Owner.ID, PID: al.Owner.PID, PIDStart: al.Owner.PIDStart}
		// The legacy file kept the owner's identity twice.
		if al.Key != o.Root+"\x00"+o.ID {
			return nil, fmt.Errorf("allocation key %q does not match its owner %s", al.Key, o)
		}
		st.Ranges = append(st.Ranges, Range{Index: al.Index, UID: al.UID, GID: al.GID, Size: al.Size, Owner: o, Shared: al.Shared})
	}
	return st, nil
}

// check refuses a state that cannot be right, whichever file it came from.
func check(st *state) error {
	keys := make(map[[2]string]bool, len(st.Ranges))
	for _, r := range st.Ranges {
		o := r.Owner
		switch {
		case r.Size == 0:
			return fmt.Errorf("allocation of %s has size 0", o)
		case uint64(r.UID)+uint64(r.Size) > maxID, uint64(r.GID)+uint64(r.Size) > maxID:
			return fmt.Errorf("allocation of %s runs past the last id", o)
		case o.ID == "":
			return errors.New("allocation with an empty container id")
		case keys[[2]string{o.Root, o.ID}]:
			return fmt.Errorf("owner %s holds two allocations", o)
		}
		keys[[2]string{o.Root, o.ID}] = true
	}
	if err := checkDisjoint(st.Ranges, func(r Range) uint32 { return r.UID }); err != nil {
		return fmt.Errorf("uids: %w", err)
	}
	if err := checkDisjoint(st.Ranges, func(r Range) uint32 { return r.GID }); err != nil {
		return fmt.Errorf("gids: %w", err)
	}
	return nil
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
	// Never write what read would refuse: it would stop every create.
	if err := check(st); err != nil {
		return fmt.Errorf("write id allocation state: %w", err)
	}
	sort.SliceStable(st.Ranges, func(i, j int) bool { return st.Ranges[i].UID < st.Ranges[j].UID })
	if err := writeAtomic(a.statePath(), a.statePath()+".tmp", encode(st), 0o600); err != nil {
		return fmt.Errorf("write id allocation state: %w", err)
	}
	// Only now is the legacy state superseded (see read).
	if err := a.buryLegacy(); err != nil {
		return fmt.Errorf("supersede legacy id allocation state: %w", err)
	}
	return nil
}

// buryLegacy makes the legacy state file an empty directory. A moat of an
// earlier version takes a missing state.json for "nothing allocated" and
// would hand out ranges in use; a directory there makes it fail instead
// ("is a directory"), whether it runs beside this one during an upgrade or
// after a downgrade. The file is exchanged with the directory in one step,
// so there is never a moment without either.
func (a *Allocator) buryLegacy() error {
	legacy := a.legacyPath()
	fi, err := os.Lstat(legacy)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case errors.Is(err, os.ErrNotExist):
		// Under the lock no moat of any version writes it meanwhile.
		return os.Mkdir(legacy, 0o700)
	case err != nil:
		return err
	}
	tomb := legacy + ".tomb"
	if err := os.RemoveAll(tomb); err != nil {
		return err
	}
	if err := os.Mkdir(tomb, 0o700); err != nil {
		return err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tomb, unix.AT_FDCWD, legacy, unix.RENAME_EXCHANGE); err != nil {
		os.Remove(tomb)
		return err
	}
	// tomb now holds the old file.
	return os.Remove(tomb)
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
//
// The new file is exchanged with the old one, which is then unlinked,
// rather than renamed over it: ext4 starts writing back a file renamed
// over another (auto_da_alloc), which costs a third of a millisecond on
// every create and delete, for the very guarantee that is not needed here.
func writeAtomic(path, tmp string, data []byte, mode os.FileMode) (retErr error) {
	// A temp file left by a writer killed after its exchange is the old
	// state's inode, which a reader may still have open: make a new one
	// rather than truncate that under the reader.
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// The umask would otherwise win.
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_EXCHANGE)
	if err == nil {
		// tmp now holds the old content; one left by a killed process is
		// overwritten next time.
		unix.Unlink(tmp)
		return nil
	}
	// No file to exchange with yet, or a filesystem that cannot.
	return os.Rename(tmp, path)
}

func (st *state) get(root, id string) (Range, bool) {
	for _, r := range st.Ranges {
		if r.Owner.Root == root && r.Owner.ID == id {
			return r, true
		}
	}
	return Range{}, false
}

func (st *state) remove(root, id string) bool {
	for i, r := range st.Ranges {
		if r.Owner.Root == root && r.Owner.ID == id {
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
