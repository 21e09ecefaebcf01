package userns

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const mib = 65536

// newTest returns an Allocator whose files all live in a temp dir. A nil
// subuid or subgid leaves that file absent.
func newTest(t testing.TB, subuid, subgid *string) (*Allocator, Config) {
	t.Helper()
	dir := t.TempDir()
	cfg := Config{
		StateDir:   filepath.Join(dir, "state"),
		SubUIDFile: filepath.Join(dir, "subuid"),
		SubGIDFile: filepath.Join(dir, "subgid"),
	}
	for path, content := range map[string]*string{cfg.SubUIDFile: subuid, cfg.SubGIDFile: subgid} {
		if content != nil {
			if err := os.WriteFile(path, []byte(*content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return New(cfg), cfg
}

func ptr(s string) *string { return &s }

func owner(id string) Owner {
	return Owner{Root: "/run/test", ID: id}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func mustAllocate(t *testing.T, a *Allocator, o Owner) Range {
	t.Helper()
	r, err := a.Allocate(o, nil)
	if err != nil {
		t.Fatalf("allocate %s: %v", o.ID, err)
	}
	return r
}

func TestFreshHost(t *testing.T) {
	const line = "moat:100000:268435456\n"
	for _, tc := range []struct {
		name    string
		content *string
	}{
		{"files absent", nil},
		{"files empty", ptr("")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, cfg := newTest(t, tc.content, tc.content)
			var got []string
			for _, id := range []string{"a", "b"} {
				r := mustAllocate(t, a, owner(id))
				if r.UID != r.GID {
					t.Errorf("%s: uid %d != gid %d", id, r.UID, r.GID)
				}
				got = append(got, fmt.Sprintf("0 %d %d", r.UID, r.Size))
			}
			if want := []string{"0 100000 65536", "0 165536 65536"}; strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("mappings %q, want %q", got, want)
			}
			for _, path := range []string{cfg.SubUIDFile, cfg.SubGIDFile} {
				if s := readFile(t, path); s != line {
					t.Errorf("%s = %q, want %q", path, s, line)
				}
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o644 {
					t.Errorf("%s mode %v, want 0644", path, fi.Mode().Perm())
				}
			}
		})
	}
}

func TestNewEntryAvoidsOthers(t *testing.T) {
	for _, tc := range []struct {
		name             string
		subuid, subgid   string
		wantUID, wantGID uint32
	}{
		{
			name:    "alice and bob",
			subuid:  "alice:100000:65536\nbob:165536:65536\n",
			subgid:  "alice:100000:65536\nbob:165536:65536\n",
			wantUID: 231072, wantGID: 231072,
		},
		{
			name:    "no trailing newline",
			subuid:  "alice:100000:65536",
			subgid:  "alice:100000:65536",
			wantUID: 165536, wantGID: 165536,
		},
		{
			name:    "entry inside the wanted span",
			subuid:  "carol:300000:10\n",
			subgid:  "carol:300000:10\n",
			wantUID: 100000 + 4*mib, wantGID: 100000 + 4*mib,
		},
		{
			name:    "entry below 100000 does not matter",
			subuid:  "dave:10000:65536\n",
			subgid:  "dave:10000:65536\n",
			wantUID: 100000, wantGID: 100000,
		},
		{
			name:    "uid and gid files differ",
			subuid:  "alice:100000:65536\n",
			subgid:  "",
			wantUID: 165536, wantGID: 100000,
		},
		{
			name:    "comments and odd lines are kept and skipped",
			subuid:  "# comment\n\nbroken line\n1000:100000:65536\n",
			subgid:  "# comment\n",
			wantUID: 165536, wantGID: 100000,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, cfg := newTest(t, &tc.subuid, &tc.subgid)
			r := mustAllocate(t, a, owner("a"))
			if r.Index != 0 || r.UID != tc.wantUID || r.GID != tc.wantGID || r.Size != mib {
				t.Errorf("got %+v, want index 0 uid %d gid %d size %d", r, tc.wantUID, tc.wantGID, mib)
			}
			for _, f := range []struct {
				path, before string
				start        uint32
			}{
				{cfg.SubUIDFile, tc.subuid, tc.wantUID},
				{cfg.SubGIDFile, tc.subgid, tc.wantGID},
			} {
				want := f.before
				if want != "" && !strings.HasSuffix(want, "\n") {
					want += "\n"
				}
				want += fmt.Sprintf("moat:%d:%d\n", f.start, DefaultCount*mib)
				if got := readFile(t, f.path); got != want {
					t.Errorf("%s = %q, want %q", f.path, got, want)
				}
			}
		})
	}
}

func TestExistingEntryAndExhaustion(t *testing.T) {
	for _, tc := range []struct {
		name           string
		subuid, subgid string
		want           []uint32 // uid starts, then exhausted
		wantGID        uint32   // gid start of the first range
	}{
		{
			name:    "two ranges",
			subuid:  "alice:100000:65536\nmoat:200000:131072\n",
			subgid:  "moat:200000:131072\n",
			want:    []uint32{200000, 265536},
			wantGID: 200000,
		},
		{
			name:    "smaller of the two files wins",
			subuid:  "moat:300000:196608\n",
			subgid:  "moat:500000:131072\n",
			want:    []uint32{300000, 365536},
			wantGID: 500000,
		},
		{
			name:    "partial range is not used",
			subuid:  "moat:100000:100000\n",
			subgid:  "moat:100000:100000\n",
			want:    []uint32{100000},
			wantGID: 100000,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, cfg := newTest(t, &tc.subuid, &tc.subgid)
			for i, uid := range tc.want {
				r := mustAllocate(t, a, owner(strconv.Itoa(i)))
				if r.Index != i || r.UID != uid || r.GID != tc.wantGID+uint32(i)*mib {
					t.Errorf("range %d: got %+v, want uid %d", i, r, uid)
				}
			}
			_, err := a.Allocate(owner("one-too-many"), nil)
			if !errors.Is(err, ErrExhausted) {
				t.Fatalf("got %v, want ErrExhausted", err)
			}
			for _, s := range []string{fmt.Sprintf("pool of %d ranges", len(tc.want)), "enlarge", `"moat" entry`, cfg.SubUIDFile, cfg.SubGIDFile} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if got := readFile(t, cfg.SubUIDFile); got != tc.subuid {
				t.Errorf("subuid changed to %q", got)
			}
			if got := readFile(t, cfg.SubGIDFile); got != tc.subgid {
				t.Errorf("subgid changed to %q", got)
			}
		})
	}
}

func TestBadEntry(t *testing.T) {
	for _, tc := range []struct{ name, subuid string }{
		{"host root", "moat:0:131072\n"},
		{"malformed", "moat:100000\n"},
		{"not a number", "moat:x:131072\n"},
		{"past the last id", "moat:4294901760:65536\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, cfg := newTest(t, &tc.subuid, ptr(""))
			_, err := a.Allocate(owner("a"), nil)
			if err == nil || !strings.Contains(err.Error(), cfg.SubUIDFile) {
				t.Fatalf("got %v, want an error naming %s", err, cfg.SubUIDFile)
			}
		})
	}
}

func TestReleaseAndReuse(t *testing.T) {
	a, _ := newTest(t, nil, nil)
	for _, id := range []string{"a", "b", "c"} {
		mustAllocate(t, a, owner(id))
	}
	if _, err := a.Release("/run/test", "b"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := a.Get("/run/test", "b"); err != nil || ok {
		t.Fatalf("b still held after release: %v %v", ok, err)
	}
	// Releasing twice, or what never was, is fine.
	for _, id := range []string{"b", "never"} {
		if _, err := a.Release("/run/test", id); err != nil {
			t.Errorf("release %s: %v", id, err)
		}
	}
	if r := mustAllocate(t, a, owner("d")); r.Index != 1 || r.UID != 165536 {
		t.Errorf("d got %+v, want the freed range 1", r)
	}
	if r := mustAllocate(t, a, owner("e")); r.Index != 3 {
		t.Errorf("e got %+v, want range 3", r)
	}
	r, ok, err := a.Get("/run/test", "d")
	if err != nil || !ok || r.UID != 165536 || r.Owner.ID != "d" {
		t.Errorf("get d: %+v %v %v", r, ok, err)
	}
	rs, err := a.List()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.Owner.ID)
	}
	if got := strings.Join(ids, ","); got != "a,d,c,e" {
		t.Errorf("list %s, want a,d,c,e", got)
	}
}

func TestDuplicateOwner(t *testing.T) {
	a, _ := newTest(t, nil, nil)
	mustAllocate(t, a, owner("a"))
	if _, err := a.Allocate(owner("a"), nil); !errors.Is(err, ErrInUse) {
		t.Fatalf("second allocation for a: %v, want ErrInUse", err)
	}
	// The same ID under another root is another container.
	if _, err := a.Allocate(Owner{Root: "/run/other", ID: "a"}, nil); err != nil {
		t.Fatal(err)
	}
}

// deadProcess returns the PID and start time of a process that has exited
// and been reaped.
func deadProcess(t *testing.T) (int, uint64) {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	start, err := ProcessStart(pid)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return pid, start
}

func TestReclaim(t *testing.T) {
	deadPID, deadStart := deadProcess(t)
	self := os.Getpid()
	selfStart, err := ProcessStart(self)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		owner     Owner
		alive     bool
		wantFreed bool
	}{
		{"dead process, container gone", Owner{PID: deadPID, PIDStart: deadStart}, false, true},
		{"dead process, container exists", Owner{PID: deadPID, PIDStart: deadStart}, true, false},
		{"create in progress", Owner{PID: self, PIDStart: selfStart}, false, false},
		{"pid reused by another process", Owner{PID: self, PIDStart: selfStart + 1}, false, true},
		{"no process recorded", Owner{}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, cfg := newTest(t, nil, nil)
			var told []Range
			cfg.Reclaimed = func(r Range) { told = append(told, r) }
			a := New(cfg)
			o := tc.owner
			o.Root, o.ID = "/run/test", "c"
			mustAllocate(t, a, o)
			alive := func(Owner) bool { return tc.alive }

			freed, err := a.Reclaim(alive)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(freed) == 1; got != tc.wantFreed {
				t.Fatalf("freed %+v, want freed %v", freed, tc.wantFreed)
			}
			if !reflect.DeepEqual(told, freed) {
				t.Errorf("Reclaimed told of %+v, want %+v", told, freed)
			}
			if tc.wantFreed && freed[0].Owner != o {
				t.Errorf("freed owner %+v, want %+v", freed[0].Owner, o)
			}
			_, held, err := a.Get(o.Root, o.ID)
			if err != nil || held == tc.wantFreed {
				t.Errorf("held %v (%v) after reclaim, want %v", held, err, !tc.wantFreed)
			}
			if _, err := a.Reclaim(nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestAllocateReclaims(t *testing.T) {
	deadPID, deadStart := deadProcess(t)
	a, _ := newTest(t, ptr("moat:100000:131072\n"), ptr("moat:100000:131072\n"))
	gone := Owner{Root: "/run/test", ID: "gone", PID: deadPID, PIDStart: deadStart}
	mustAllocate(t, a, gone)
	mustAllocate(t, a, Owner{Root: "/run/test", ID: "creating", PID: os.Getpid()})
	// The pool is full, and without an alive func nothing is reclaimed.
	if _, err := a.Allocate(owner("x"), nil); !errors.Is(err, ErrExhausted) {
		t.Fatalf("got %v, want ErrExhausted", err)
	}
	// A gone owner is reclaimed before the duplicate check, so a create that
	// died half way does not block the next create of the same ID.
	alive := func(Owner) bool { return false }
	r, err := a.Allocate(gone, alive)
	if err != nil {
		t.Fatal(err)
	}
	if r.Index != 0 {
		t.Errorf("got %+v, want the reclaimed range 0", r)
	}
	// The create in progress keeps its range.
	if _, err := a.Allocate(owner("y"), alive); err != nil {
		t.Fatal(err)
	}
	if _, held, err := a.Get("/run/test", "creating"); err != nil || !held {
		t.Errorf("range of a create in progress reclaimed: %v %v", held, err)
	}
}

func TestCorruptState(t *testing.T) {
	const good = "0 100000 100000 65536 0 7 9 \"r\" \"a\"\n"
	for _, tc := range []struct{ name, file, content string }{
		{"empty", "ranges", ""},
		{"no header", "ranges", good},
		{"other format", "ranges", "moat id ranges 3\n"},
		{"no final newline", "ranges", "moat id ranges 2\n" + strings.TrimSuffix(good, "\n")},
		{"short line", "ranges", "moat id ranges 2\n0 100000 100000 65536\n"},
		{"not a number", "ranges", "moat id ranges 2\n0 x 100000 65536 0 7 9 \"r\" \"a\"\n"},
		{"unquoted", "ranges", "moat id ranges 2\n0 100000 100000 65536 0 7 9 r a\n"},
		{"no id", "ranges", "moat id ranges 2\n0 100000 100000 65536 0 7 9 \"r\"\n"},
		{"empty id", "ranges", "moat id ranges 2\n0 100000 100000 65536 0 7 9 \"r\" \"\"\n"},
		{"trailing field", "ranges", "moat id ranges 2\n0 100000 100000 65536 0 7 9 \"r\" \"a\" x\n"},
		{"shared not a flag", "ranges", "moat id ranges 2\n0 100000 100000 65536 2 7 9 \"r\" \"a\"\n"},
		{"size zero", "ranges", "moat id ranges 2\n0 100000 100000 0 0 7 9 \"r\" \"a\"\n"},
		{"past the last id", "ranges", "moat id ranges 2\n0 4294967295 100000 65536 0 7 9 \"r\" \"a\"\n"},
		{"id too large", "ranges", "moat id ranges 2\n0 4294967296 100000 65536 0 7 9 \"r\" \"a\"\n"},
		{"same owner twice", "ranges", "moat id ranges 2\n" + good + "1 165536 165536 65536 0 7 9 \"r\" \"a\"\n"},
		{"overlap", "ranges", "moat id ranges 2\n" + good + "1 165535 300000 65536 0 7 9 \"r\" \"b\"\n"},
		{"legacy not json", "state.json", "garbage"},
		{"legacy not ours", "state.json", `{"foo": 1}`},
		{"legacy unknown version", "state.json", `{"version": 2, "allocations": []}`},
		{"legacy trailing data", "state.json", `{"version": 1} {}`},
		{"legacy size zero", "state.json", `{"version": 1, "allocations": [{"uid": 100000, "gid": 100000, "size": 0, "key": "r\u0000a", "owner": {"root": "r", "id": "a"}}]}`},
		{"legacy key mismatch", "state.json", `{"version": 1, "allocations": [{"uid": 100000, "gid": 100000, "size": 65536, "key": "x", "owner": {"root": "r", "id": "a"}}]}`},
		{"legacy overlap", "state.json", `{"version": 1, "allocations": [
			{"uid": 100000, "gid": 100000, "size": 65536, "key": "r\u0000a", "owner": {"root": "r", "id": "a"}},
			{"uid": 165535, "gid": 300000, "size": 65536, "key": "r\u0000b", "owner": {"root": "r", "id": "b"}}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, cfg := newTest(t, nil, nil)
			path := filepath.Join(cfg.StateDir, tc.file)
			if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			calls := map[string]func() error{
				"allocate": func() error { _, err := a.Allocate(owner("a"), func(Owner) bool { return false }); return err },
				"release":  func() error { _, err := a.Release("r", "a"); return err },
				"get":      func() error { _, _, err := a.Get("r", "a"); return err },
				"list":     func() error { _, err := a.List(); return err },
				"reclaim":  func() error { _, err := a.Reclaim(func(Owner) bool { return false }); return err },
			}
			for name, call := range calls {
				err := call()
				if err == nil || !strings.Contains(err.Error(), path) {
					t.Errorf("%s: got %v, want an error naming %s", name, err, path)
				}
			}
			if got := readFile(t, path); got != tc.content {
				t.Errorf("state file changed to %q", got)
			}
		})
	}
}

func TestStateFile(t *testing.T) {
	a, cfg := newTest(t, nil, nil)
	// A temp file left by a holder killed before its rename is harmless.
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.StateDir, "ranges.tmp"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := Owner{Root: "/run/test", ID: "a", PID: os.Getpid()}
	r := mustAllocate(t, a, o)
	start, err := ProcessStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if r.Owner.PIDStart != start {
		t.Errorf("PIDStart %d, want %d filled in", r.Owner.PIDStart, start)
	}
	want := fmt.Sprintf("moat id ranges 2\n0 100000 100000 %d 0 %d %d \"/run/test\" \"a\"\n", mib, os.Getpid(), start)
	if got := readFile(t, filepath.Join(cfg.StateDir, "ranges")); got != want {
		t.Errorf("state on disk:\n%s\nwant:\n%s", got, want)
	}
	// Later writes exchange the new file with the old and remove that.
	mustAllocate(t, a, Owner{Root: "/run/test", ID: "b", PID: os.Getpid()})
	if rs, err := a.List(); err != nil || len(rs) != 2 {
		t.Errorf("after a second allocation: %+v, %v", rs, err)
	}
	names, _ := filepath.Glob(filepath.Join(cfg.StateDir, "*"))
	wantNames := []string{"lock", "ranges", "state.json"}
	for i := range names {
		names[i] = filepath.Base(names[i])
	}
	if !reflect.DeepEqual(names, wantNames) {
		t.Errorf("state dir holds %v, want %v", names, wantNames)
	}
	// A moat of an earlier version reads state.json and must not take it
	// for "nothing allocated".
	if _, err := os.ReadFile(filepath.Join(cfg.StateDir, "state.json")); !errors.Is(err, syscall.EISDIR) {
		t.Errorf("the legacy state reads as %v, want EISDIR", err)
	}
}

// A host upgraded with containers running has their ranges in the JSON
// state of earlier versions: they stay allocated, and the first change
// moves them to the current file.
func TestLegacyState(t *testing.T) {
	a, cfg := newTest(t, nil, nil)
	legacy := filepath.Join(cfg.StateDir, "state.json")
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	old := `{"version":1,"allocations":[
{"index":0,"uid":100000,"gid":100000,"size":65536,"key":"/run/x\u0000a","owner":{"root":"/run/x","id":"a","pid":7,"pid_start":9}},
{"index":1,"uid":165536,"gid":165536,"size":65536,"key":"/run/x\u0000b","owner":{"root":"/run/x","id":"b","pid":7,"pid_start":9}, "shared": true}
]}
`
	if err := os.WriteFile(legacy, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	before, err := a.List()
	if err != nil || len(before) != 2 || before[0].Owner.ID != "a" || !before[1].Shared || before[1].Owner.PIDStart != 9 {
		t.Fatalf("legacy state read as %+v, %v", before, err)
	}
	alive := func(Owner) bool { return true }
	r, err := a.Allocate(owner("c"), alive)
	if err != nil {
		t.Fatal(err)
	}
	if r.Index != 2 {
		t.Errorf("new range %+v, want the third: the legacy ranges are in use", r)
	}
	if fi, err := os.Lstat(legacy); err != nil || !fi.IsDir() {
		t.Errorf("legacy state after a change: %v, %v; want it buried as a directory", fi, err)
	}
	if _, err := os.Lstat(legacy + ".tomb"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the exchanged legacy file is left: %v", err)
	}
	after, err := a.List()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(after[:2], before) || len(after) != 3 {
		t.Errorf("after the move: %+v, want %+v and the new range", after, before)
	}
}

func TestProcessStart(t *testing.T) {
	self, err := ProcessStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := ProcessStart(os.Getpid()); again != self {
		t.Errorf("start time changed: %d then %d", self, again)
	}

	// A command name with spaces and parentheses must not shift the fields.
	bin := filepath.Join(t.TempDir(), "a) 1 2 (b")
	if err := os.Symlink("/bin/sleep", bin); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	child, err := ProcessStart(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if child < self {
		t.Errorf("child started at %d, before its parent at %d", child, self)
	}
	if !processRunning(cmd.Process.Pid, child) {
		t.Error("running child reported as not running")
	}

	if _, err := ProcessStart(-1); err == nil {
		t.Error("no error for pid -1")
	}
}

// Concurrency: every allocation, from goroutines here and from other
// processes, must get a range of its own, and the moat entry must be added
// exactly once.

const (
	helperEnv   = "MOAT_USERNS_TEST_HELPER"
	helperRound = 6
)

// churn allocates helperRound ranges, frees every other one and allocates
// again, so that allocations and releases interleave with other workers.
func churn(a *Allocator, name string) error {
	alive := func(Owner) bool { return true }
	o := func(i int) Owner {
		return Owner{Root: "/run/test", ID: fmt.Sprintf("%s-%d", name, i), PID: os.Getpid()}
	}
	for i := 0; i < helperRound; i++ {
		if _, err := a.Allocate(o(i), alive); err != nil {
			return err
		}
	}
	for i := 0; i < helperRound; i += 2 {
		if _, err := a.Release("/run/test", o(i).ID); err != nil {
			return err
		}
	}
	for i := helperRound; i < 2*helperRound; i++ {
		if _, err := a.Allocate(o(i), alive); err != nil {
			return err
		}
	}
	return nil
}

// TestHelperProcess is the body of the processes TestConcurrent starts.
func TestHelperProcess(t *testing.T) {
	v := os.Getenv(helperEnv)
	if v == "" {
		t.Skip("helper process only")
	}
	var cfg Config
	if err := json.Unmarshal([]byte(v), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := churn(New(cfg), fmt.Sprintf("proc%d", os.Getpid())); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrent(t *testing.T) {
	const procs, goroutines = 4, 8
	_, cfg := newTest(t, ptr("alice:100000:65536\n"), ptr(""))
	env, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, procs+goroutines)
	for i := 0; i < procs; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"="+string(env))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("helper process: %v\n%s", err, out)
			}
		}()
	}
	for i := 0; i < goroutines; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each goroutine has its own Allocator, as separate runtimes would.
			if err := churn(New(cfg), fmt.Sprintf("goroutine%d", i)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	rs, err := New(cfg).List()
	if err != nil {
		t.Fatal(err)
	}
	if want := (procs + goroutines) * (helperRound + helperRound/2); len(rs) != want {
		t.Errorf("%d ranges allocated, want %d", len(rs), want)
	}
	uids := map[uint32]string{}
	gids := map[uint32]string{}
	for _, r := range rs {
		if other, ok := uids[r.UID]; ok {
			t.Errorf("uid %d held by %s and %s", r.UID, other, r.Owner.ID)
		}
		if other, ok := gids[r.GID]; ok {
			t.Errorf("gid %d held by %s and %s", r.GID, other, r.Owner.ID)
		}
		uids[r.UID], gids[r.GID] = r.Owner.ID, r.Owner.ID
		if r.UID != 165536+uint32(r.Index)*mib || r.GID != 100000+uint32(r.Index)*mib {
			t.Errorf("range %+v off the grid", r)
		}
	}
	for path, want := range map[string]string{
		cfg.SubUIDFile: "alice:100000:65536\nmoat:165536:268435456\n",
		cfg.SubGIDFile: "moat:100000:268435456\n",
	} {
		if got := readFile(t, path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
}

// A container that joins another's namespaces holds the same range; the
// range is free again only when both have released it, and the state file
// with the shared holder reads back.
func TestJoin(t *testing.T) {
	a, _ := newTest(t, nil, nil)
	first := mustAllocate(t, a, owner("first"))
	mustAllocate(t, a, owner("other"))
	if _, err := a.Join(owner("nobody"), 12345, nil); !errors.Is(err, ErrNotAllocated) {
		t.Fatalf("join of an unallocated uid: %v, want ErrNotAllocated", err)
	}
	j, err := a.Join(owner("joiner"), first.UID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if j.UID != first.UID || j.GID != first.GID || j.Size != first.Size || !j.Shared || j.Owner.ID != "joiner" {
		t.Fatalf("joined range %+v, want that of %+v, shared", j, first)
	}
	if _, err := a.Join(owner("joiner"), first.UID, nil); !errors.Is(err, ErrInUse) {
		t.Fatalf("second join: %v, want ErrInUse", err)
	}
	if _, err := a.Release("/run/test", "first"); err != nil {
		t.Fatal(err)
	}
	// Still held by the joiner: a new container must not get it.
	if r := mustAllocate(t, a, owner("third")); r.UID == first.UID {
		t.Fatalf("range %d handed out while the joiner holds it", r.UID)
	}
	if _, err := a.Release("/run/test", "joiner"); err != nil {
		t.Fatal(err)
	}
	if r := mustAllocate(t, a, owner("fourth")); r.UID != first.UID {
		t.Fatalf("fourth got %d, want the freed %d", r.UID, first.UID)
	}
	if _, err := a.List(); err != nil {
		t.Fatalf("state with shared holders does not read back: %v", err)
	}
}

// Identical ranges are accepted only with the shared mark.
func TestCheckDisjointShared(t *testing.T) {
	r := func(id string, shared bool) Range {
		return Range{UID: 100000, GID: 100000, Size: mib, Owner: owner(id), Shared: shared}
	}
	uid := func(r Range) uint32 { return r.UID }
	if err := checkDisjoint([]Range{r("a", false), r("b", true)}, uid); err != nil {
		t.Errorf("shared holder refused: %v", err)
	}
	if err := checkDisjoint([]Range{r("a", false), r("b", false)}, uid); err == nil {
		t.Error("two unshared holders of one range accepted")
	}
	other := Range{UID: 100000, GID: 165536, Size: mib, Owner: owner("c"), Shared: true}
	if err := checkDisjoint([]Range{r("a", false), other}, uid); err == nil {
		t.Error("shared holder with other gids accepted")
	}
}

// A state file torn by a crash of the machine is from an earlier boot, whose
// containers are all gone: it reads as empty and is replaced. The same file
// written during this boot is refused (TestCorruptState).
func TestTornStateOfEarlierBoot(t *testing.T) {
	a, cfg := newTest(t, nil, nil)
	path := filepath.Join(cfg.StateDir, "ranges")
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var up unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &up); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Duration(up.Nano()) - time.Hour)
	if err := os.Chtimes(path, before, before); err != nil {
		t.Fatal(err)
	}
	if r := mustAllocate(t, a, owner("a")); r.UID != 100000 {
		t.Fatalf("got %+v, want the first range", r)
	}
	if rs, err := a.List(); err != nil || len(rs) != 1 {
		t.Fatalf("state after the torn file: %+v %v", rs, err)
	}
}

// The cost of one create's allocation with many containers running: every
// owner is checked on each allocation, so it grows with their number.
func BenchmarkAllocateAmong(b *testing.B) {
	for _, n := range []int{0, 200} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			a, _ := newTest(b, ptr("moat:100000:268435456\n"), ptr("moat:100000:268435456\n"))
			dir := b.TempDir() // the owners' root
			// The owners are alive as the runtime sees it: their state
			// dirs exist.
			alive := func(o Owner) bool {
				_, err := os.Stat(filepath.Join(o.Root, o.ID))
				return err == nil
			}
			for i := 0; i < n; i++ {
				id := "c" + strconv.Itoa(i)
				if err := os.MkdirAll(filepath.Join(dir, id), 0o700); err != nil {
					b.Fatal(err)
				}
				if _, err := a.Allocate(Owner{Root: dir, ID: id, PID: os.Getpid()}, alive); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				o := Owner{Root: dir, ID: "new", PID: os.Getpid()}
				if _, err := a.Allocate(o, alive); err != nil {
					b.Fatal(err)
				}
				if _, err := a.Release(dir, "new"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The state file reads back as written, whatever the owners' roots and
// IDs hold, one allocation per line.
func TestEncodeState(t *testing.T) {
	odd := []Owner{
		{Root: "/run/x", ID: "c0", PID: 7, PIDStart: 1 << 40},
		{Root: "/run/with space", ID: "quote\"and\\back"},
		{Root: "/run/x", ID: "new\nline and tab\t"},
		{Root: "/run/ünïcode", ID: "\x00\xff"},
	}
	for n := 0; n <= len(odd); n++ {
		st := &state{Ranges: []Range{}}
		for i, o := range odd[:n] {
			st.Ranges = append(st.Ranges, Range{Index: i, UID: uint32(100000 + i*mib), GID: uint32(200000 + i*mib), Size: mib, Owner: o, Shared: i%2 == 1})
		}
		data := encode(st)
		got, err := decode(data)
		if err != nil {
			t.Fatalf("%d allocations: %v\n%s", n, err, data)
		}
		if !reflect.DeepEqual(got, st) || strings.Count(string(data), "\n") != n+1 {
			t.Fatalf("%d allocations: read back %+v, file:\n%s", n, got, data)
		}
	}
}

// Whatever decode accepts, encode writes so that it reads back the same.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("moat id ranges 2\n0 100000 100000 65536 0 7 9 \"r\" \"a\"\n"))
	f.Add([]byte("moat id ranges 2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := decode(data)
		if err != nil {
			return
		}
		again, err := decode(encode(st))
		if err != nil || !reflect.DeepEqual(again, st) {
			t.Fatalf("%q read back as %+v, %v; want %+v", data, again, err, st)
		}
	})
}
