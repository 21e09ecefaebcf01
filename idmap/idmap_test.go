package idmap

import (
	"github.com/moatrt/moat/internal/fstest"

	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A container's mapping; uid and gid bases differ to catch mix-ups.
var (
	ctrUIDs = []Mapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	ctrGIDs = []Mapping{{ContainerID: 0, HostID: 300000, Size: 65536}}
)

func newUserns(t *testing.T, uids, gids []Mapping) *os.File {
	t.Helper()
	ns, err := NewUserns(uids, gids)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// attachMapped mounts an ID-mapped clone of src at dst until the test ends.
func attachMapped(t *testing.T, src, dst string, ns *os.File, recursive bool) {
	t.Helper()
	tree, err := CloneMapped(src, ns, recursive)
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Attach(tree, dst); err != nil {
		t.Fatal(err)
	}
	fstest.UnmountAtEnd(t, dst)
}

// children lists the pids of this process's children.
func children(t *testing.T) []string {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err == nil {
			pids = append(pids, strings.Fields(string(b))...)
		}
	}
	return pids
}

func TestNewUserns(t *testing.T) {
	fstest.RequiresRoot(t)
	const overflow = "65534:65534"
	tests := []struct {
		name       string
		uids, gids []Mapping
		// on-disk uid/gid (as container IDs) -> host view through the map
		want map[int]string
	}{{
		name: "one range",
		uids: ctrUIDs, gids: ctrGIDs,
		want: map[int]string{0: "100000:300000", 1000: "101000:301000", 65535: "165535:365535", 70000: overflow},
	}, {
		name: "two ranges",
		uids: []Mapping{{0, 100000, 1000}, {1000, 500000, 1000}},
		gids: []Mapping{{0, 100000, 1000}, {1000, 600000, 1000}},
		want: map[int]string{0: "100000:100000", 999: "100999:100999", 1000: "500000:600000", 5000: overflow},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := fstest.TestDir(t)
			src := filepath.Join(d, "src")
			var nodes []fstest.Node
			for id := range tc.want {
				nodes = append(nodes, fstest.Node{Path: strconv.Itoa(id), UID: id, GID: id})
			}
			fstest.MakeTree(t, src, nodes...)
			ns := newUserns(t, tc.uids, tc.gids)
			if kids := children(t); len(kids) != 0 {
				t.Errorf("namespace holder not reaped: children %v", kids)
			}
			mnt := filepath.Join(d, "mnt")
			attachMapped(t, src, mnt, ns, false)
			for id, want := range tc.want {
				got := fstest.StatString(filepath.Join(mnt, strconv.Itoa(id)))
				if got != want+" file" {
					t.Errorf("on-disk %d seen as %q, want %q", id, got, want+" file")
				}
			}
		})
	}
}

func TestNewUsernsErrors(t *testing.T) {
	fstest.RequiresRoot(t)
	tests := []struct {
		name       string
		uids, gids []Mapping
		want       string
	}{
		{"no uids", nil, ctrGIDs, "uid map: no mapping"},
		{"no gids", ctrUIDs, nil, "gid map: no mapping"},
		{"empty range", []Mapping{{0, 100000, 0}}, ctrGIDs, "size 0"},
		{"overlap", []Mapping{{0, 100000, 10}, {5, 200000, 10}}, ctrGIDs, "write uid_map: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns, err := NewUserns(tc.uids, tc.gids)
			if err == nil {
				ns.Close()
				t.Fatal("no error")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if kids := children(t); len(kids) != 0 {
				t.Errorf("namespace holder not reaped: children %v", kids)
			}
		})
	}
}

func TestCloneMappedRecursive(t *testing.T) {
	fstest.RequiresRoot(t)
	d := fstest.TestDir(t)
	src := filepath.Join(d, "src")
	fstest.MakeTree(t, src, fstest.Node{Path: "f", UID: 1000, GID: 1000}, fstest.Node{Path: "sub", Dir: true})
	if err := unix.Mount("tmpfs", filepath.Join(src, "sub"), "tmpfs", 0, "mode=755"); err != nil {
		t.Fatal(err)
	}
	fstest.UnmountAtEnd(t, filepath.Join(src, "sub"))
	fstest.MakeTree(t, filepath.Join(src, "sub"), fstest.Node{Path: "g", UID: 0, GID: 0})
	ns := newUserns(t, ctrUIDs, ctrGIDs)

	tests := []struct {
		recursive bool
		wantG     string
	}{
		{false, "error: no such file or directory"},
		{true, "100000:300000 file"},
	}
	for _, tc := range tests {
		mnt := filepath.Join(d, "mnt-"+map[bool]string{false: "flat", true: "recursive"}[tc.recursive])
		attachMapped(t, src, mnt, ns, tc.recursive)
		if got := fstest.StatString(filepath.Join(mnt, "f")); got != "101000:301000 file" {
			t.Errorf("recursive=%v: f is %q", tc.recursive, got)
		}
		if got := fstest.StatString(filepath.Join(mnt, "sub", "g")); got != tc.wantG {
			t.Errorf("recursive=%v: sub/g is %q, want %q", tc.recursive, got, tc.wantG)
		}
	}
}

func TestCloneMappedUnsupported(t *testing.T) {
	fstest.RequiresRoot(t)
	d := fstest.TestDir(t)
	ramfs := filepath.Join(d, "ramfs")
	tree := filepath.Join(d, "tree")
	fstest.MakeTree(t, d, fstest.Node{Path: "ramfs", Dir: true}, fstest.Node{Path: "tree/sub", Dir: true})
	for _, mp := range []string{ramfs, filepath.Join(tree, "sub")} {
		if err := unix.Mount("ramfs", mp, "ramfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		fstest.UnmountAtEnd(t, mp)
	}
	ns := newUserns(t, ctrUIDs, ctrGIDs)
	mapped := filepath.Join(d, "mapped")
	attachMapped(t, tree, mapped, ns, false)

	tests := []struct {
		name      string
		path      string
		recursive bool
		want      string
	}{
		{"proc", "/proc", false, "the proc filesystem of /proc does not support ID-mapped mounts"},
		{"ramfs", ramfs, false, "the ramfs filesystem of " + ramfs + " does not support ID-mapped mounts"},
		{"ramfs recursive", ramfs, true, "the ramfs filesystem of " + ramfs + " does not support ID-mapped mounts"},
		{"submount", tree, true, "the ramfs filesystem of " + tree + " (mounted at " + tree + "/sub) does not support ID-mapped mounts"},
		{"already mapped", mapped, false, mapped + " is already an ID-mapped mount"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := CloneMapped(tc.path, ns, tc.recursive)
			if err == nil {
				f.Close()
				t.Fatal("no error")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// overlayLayers builds a two-layer image like Docker's: lower2 at the
// bottom, lower1 above it with an opaque dir and a whiteout.
func overlayLayers(t *testing.T, d string) Overlay {
	t.Helper()
	fstest.MakeTree(t, filepath.Join(d, "lower2"),
		fstest.Node{Path: "root0", UID: 0, GID: 0},
		fstest.Node{Path: "user1000", UID: 1000, GID: 1000},
		fstest.Node{Path: "home", Dir: true, UID: 1000, GID: 1000},
		fstest.Node{Path: "opq", Dir: true},
		fstest.Node{Path: "opq/hidden"},
		fstest.Node{Path: "gone"},
	)
	fstest.MakeTree(t, filepath.Join(d, "lower1"),
		fstest.Node{Path: "opq", Dir: true, Opaque: true},
		fstest.Node{Path: "opq/shown"},
		fstest.Node{Path: "gone", Whiteout: true},
	)
	fstest.MakeTree(t, d, fstest.Node{Path: "layer/upper", Dir: true}, fstest.Node{Path: "layer/work", Dir: true}, fstest.Node{Path: "merged", Dir: true})
	return Overlay{
		Lower:   []string{filepath.Join(d, "lower1"), filepath.Join(d, "lower2")},
		Upper:   filepath.Join(d, "layer/upper"),
		Work:    filepath.Join(d, "layer/work"),
		Options: []string{"index=off", "redirect_dir=on"},
	}
}

func mountOverlay(t *testing.T, target string, o Overlay) {
	t.Helper()
	if err := MountOverlay(target, o, mapped(t, ctrUIDs, ctrGIDs)); err != nil {
		t.Fatal(err)
	}
	fstest.UnmountAtEnd(t, target)
}

func TestMountOverlay(t *testing.T) {
	fstest.RequiresRoot(t)
	d := fstest.TestDir(t)
	o := overlayLayers(t, d)
	m := filepath.Join(d, "merged")
	mountOverlay(t, m, o)

	// The host sees image files as owned by the container's IDs.
	if got := fstest.StatString(filepath.Join(m, "user1000")); got != "101000:301000 file" {
		t.Errorf("host view of user1000: %q", got)
	}

	steps := []fstest.Step{
		{UID: 0, Op: "stat", Path: "/", Want: "0:0 dir"},
		{UID: 0, Op: "stat", Path: "root0", Want: "0:0 file"},
		{UID: 0, Op: "stat", Path: "user1000", Want: "1000:1000 file"},
		{UID: 0, Op: "ls", Path: "opq", Want: "shown"},
		{UID: 0, Op: "stat", Path: "gone", Want: "error: no such file or directory"},
		{UID: 0, Op: "ls", Path: "/", Want: "home,opq,root0,user1000"},
		{UID: 0, Op: "mkfile", Path: "new0", Want: "ok"},
		{UID: 0, Op: "mkdir", Path: "dir0", Want: "ok"},
		{UID: 0, Op: "stat", Path: "new0", Want: "0:0 file"},
		{UID: 0, Op: "rm", Path: "root0", Want: "ok"},
		{UID: 0, Op: "stat", Path: "root0", Want: "error: no such file or directory"},
		{UID: 0, Op: "mkfile", Path: "opq/new", Want: "ok"},
		{UID: 0, Op: "ls", Path: "opq", Want: "new,shown"},
		{UID: 1000, Op: "mkfile", Path: "home/new1000", Want: "ok"},
		{UID: 1000, Op: "mkdir", Path: "home/dir1000", Want: "ok"},
		{UID: 1000, Op: "write", Path: "user1000", Want: "ok"},
		{UID: 1000, Op: "mkfile", Path: "denied", Want: "error: permission denied"},
		{UID: 1000, Op: "stat", Path: "home/new1000", Want: "1000:1000 file"},
	}
	fstest.RunSteps(t, sysMap(ctrUIDs), sysMap(ctrGIDs), m, steps)

	// On disk the upper layer holds image-native IDs.
	disk := map[string]string{
		"new0":             "0:0 file",
		"dir0":             "0:0 dir",
		"home":             "1000:1000 dir",
		"home/new1000":     "1000:1000 file",
		"home/dir1000":     "1000:1000 dir",
		"user1000":         "1000:1000 file",
		"root0":            "0:0 char 0:0", // a whiteout
		"opq/new":          "0:0 file",
		"opq/hidden":       "error: no such file or directory",
		"gone":             "error: no such file or directory",
		"../work/work/new": "error: no such file or directory",
	}
	fstest.CheckOnDisk(t, o.Upper, disk)
	if b, err := os.ReadFile(filepath.Join(o.Upper, "user1000")); err != nil || string(b) != "user1000more" {
		t.Errorf("copied-up user1000 holds %q, %v", b, err)
	}
	// The work dir overlay made belongs to the container too.
	if got := fstest.StatString(filepath.Join(o.Work, "work")); got != "0:0 dir" {
		t.Errorf("work/work on disk is %q", got)
	}
}

// TestMountOverlaySymlinkedUpper checks that an upper dir reached through
// a symlink is still ID-mapped.
func TestMountOverlaySymlinkedUpper(t *testing.T) {
	fstest.RequiresRoot(t)
	d := fstest.TestDir(t)
	o := overlayLayers(t, d)
	if err := os.Symlink(filepath.Join(d, "layer"), filepath.Join(d, "link")); err != nil {
		t.Fatal(err)
	}
	o.Upper, o.Work = filepath.Join(d, "link/upper"), filepath.Join(d, "link/work")
	m := filepath.Join(d, "merged")
	mountOverlay(t, m, o)
	if got := fstest.Inside(t, sysMap(ctrUIDs), sysMap(ctrGIDs), 1000, 1000, "mkfile", filepath.Join(m, "home/f")); got[0] != "ok" {
		t.Fatalf("mkfile: %s", got[0])
	}
	if got := fstest.StatString(filepath.Join(d, "layer/upper/home/f")); got != "1000:1000 file" {
		t.Errorf("upper/home/f on disk is %q", got)
	}
}

func TestMountOverlayReadOnly(t *testing.T) {
	fstest.RequiresRoot(t)
	d := fstest.TestDir(t)
	o := overlayLayers(t, d)
	o.Upper, o.Work = "", ""
	m := filepath.Join(d, "merged")
	mountOverlay(t, m, o)
	got := fstest.Inside(t, sysMap(ctrUIDs), sysMap(ctrGIDs), 0, 0,
		"stat", filepath.Join(m, "user1000"),
		"ls", filepath.Join(m, "opq"),
		"mkfile", filepath.Join(m, "new"))
	want := []string{"1000:1000 file", "shown", "error: read-only file system"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
}

// Mounting an overlay, which changes the credentials of a thread, leaves
// every thread with its own, the main thread included, also when the mount
// fails.
func TestMountOverlayThreads(t *testing.T) {
	fstest.RequiresRoot(t)
	d := fstest.TestDir(t)
	o := overlayLayers(t, d)
	t.Run("main thread", func(t *testing.T) {
		// Run first thing in a fresh process, the mount is made on the
		// main thread, as in the moat command.
		m := filepath.Join(d, "merged")
		fstest.UnmountAtEnd(t, m)
		fstest.OnMain(t, "mount-overlay", append([]string{m, o.Upper, o.Work}, o.Lower...)...)
		if got := fstest.StatString(filepath.Join(m, "user1000")); got != "101000:301000 file" {
			t.Errorf("host view of user1000: %q", got)
		}
	})
	t.Run("repeated", func(t *testing.T) {
		before, err := fstest.ThreadStates()
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			m := filepath.Join(d, "merged"+strconv.Itoa(i))
			if err := os.Mkdir(m, 0o755); err != nil {
				t.Fatal(err)
			}
			ro := Overlay{Lower: o.Lower}
			mountOverlay(t, m, ro)
			bad := ro
			bad.Options = []string{"nosuchoption"}
			if err := MountOverlay(m, bad, mapped(t, ctrUIDs, ctrGIDs)); err == nil {
				t.Fatal("an overlay with a bad option mounted")
			}
		}
		fstest.CheckThreads(t, before)
	})
}

func TestMountOverlayErrors(t *testing.T) {
	fstest.RequiresRoot(t)
	tests := []struct {
		name   string
		change func(d string, o *Overlay)
		uids   []Mapping
		want   string
	}{{
		name:   "missing lower",
		change: func(d string, o *Overlay) { o.Lower = append(o.Lower, filepath.Join(d, "nope")) },
		want:   "lower layer: open_tree " + "%d/nope: no such file or directory",
	}, {
		name:   "no lower",
		change: func(d string, o *Overlay) { o.Lower = nil },
		want:   "at least one lower layer",
	}, {
		name:   "one lower without upper",
		change: func(d string, o *Overlay) { o.Lower, o.Upper, o.Work = o.Lower[:1], "", "" },
		want:   "at least two lower layers",
	}, {
		name:   "upper without work",
		change: func(d string, o *Overlay) { o.Work = "" },
		want:   "both an upper and a work dir or neither",
	}, {
		name:   "layer in options",
		change: func(d string, o *Overlay) { o.Options = append(o.Options, "lowerdir=/x") },
		want:   `overlay option "lowerdir=/x"`,
	}, {
		name:   "bad option",
		change: func(d string, o *Overlay) { o.Options = append(o.Options, "redirect_dir=sideways") },
		want:   "overlay option redirect_dir=sideways: invalid argument",
	}, {
		name: "work on another mount",
		change: func(d string, o *Overlay) {
			o.Work = filepath.Join(d, "tmpfs", "work")
		},
		want: "must be on the same mount",
	}, {
		name:   "no root mapping",
		change: func(d string, o *Overlay) {},
		uids:   []Mapping{{ContainerID: 1, HostID: 100001, Size: 10}},
		want:   "uid map: no mapping for ID 0",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := fstest.TestDir(t)
			o := overlayLayers(t, d)
			fstest.MakeTree(t, d, fstest.Node{Path: "tmpfs", Dir: true})
			if err := unix.Mount("tmpfs", filepath.Join(d, "tmpfs"), "tmpfs", 0, ""); err != nil {
				t.Fatal(err)
			}
			fstest.UnmountAtEnd(t, filepath.Join(d, "tmpfs"))
			fstest.MakeTree(t, d, fstest.Node{Path: "tmpfs/work", Dir: true})
			tc.change(d, &o)
			uids := ctrUIDs
			if tc.uids != nil {
				uids = tc.uids
			}
			m := filepath.Join(d, "merged")
			err := MountOverlay(m, o, mapped(t, uids, ctrGIDs))
			if err == nil {
				unix.Unmount(m, unix.MNT_DETACH)
				t.Fatal("no error")
			}
			want := strings.ReplaceAll(tc.want, "%d", d)
			t.Log(err)
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
			if left := fstest.MountsUnder(t, m); len(left) > 0 {
				t.Errorf("mounted after error: %v", left)
			}
		})
	}
}

// mapped is a user namespace of these mappings for ID-mapped mounts, closed
// when the test ends.
func mapped(t testing.TB, uids, gids []Mapping) *Userns {
	u := &Userns{UIDs: uids, GIDs: gids}
	t.Cleanup(u.Close)
	return u
}

// One namespace serves every mount of a container: it is made once.
func TestUsernsMadeOnce(t *testing.T) {
	fstest.RequiresRoot(t)
	u := &Userns{UIDs: ctrUIDs, GIDs: ctrGIDs}
	first, err := u.File()
	if err != nil {
		t.Fatal(err)
	}
	again, err := u.File()
	if err != nil {
		t.Fatal(err)
	}
	if first != again {
		t.Fatal("a second namespace was made")
	}
	u.Close()
	u.Close() // closing twice is harmless
	if _, err := first.Stat(); err == nil {
		t.Fatal("the namespace is still open after Close")
	}
}
