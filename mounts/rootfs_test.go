package mounts

import (
	"github.com/moatrt/moat/internal/fstest"

	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/idmap"
)

// A container's mapping; uid and gid bases differ to catch mix-ups.
var (
	ctrUIDs = []idmap.Mapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	ctrGIDs = []idmap.Mapping{{ContainerID: 0, HostID: 300000, Size: 65536}}
)

// dockerLayout is an overlay2 data dir with a two-layer image and one
// container, as Docker lays it out.
type dockerLayout struct {
	home   string // <data-root>/overlay2
	id     string // the container's layer dir
	lowers []string
	upper  string
	work   string
	merged string
}

// How the test mounts the container's overlay, as Docker does.
const (
	absDiffs = iota // lowerdir=<home>/<layer>/diff:...
	absLinks        // lowerdir=<home>/l/<short>:... (Docker's usual)
	relative        // lowerdir=l/<short>:...,upperdir=<id>/diff,... from cwd <home> (Docker with many layers)
)

// newDockerLayout makes <dir>/overlay2.
func newDockerLayout(t *testing.T, dir string, layers int) *dockerLayout {
	t.Helper()
	home := filepath.Join(dir, "overlay2")
	l := &dockerLayout{home: home, id: filepath.Join(home, "cid")}
	l.upper = filepath.Join(l.id, "diff")
	l.work = filepath.Join(l.id, "work")
	l.merged = filepath.Join(l.id, "merged")
	fstest.MakeTree(t, home, fstest.Node{Path: "l", Dir: true}, fstest.Node{Path: "cid/diff", Dir: true},
		fstest.Node{Path: "cid/work", Dir: true}, fstest.Node{Path: "cid/merged", Dir: true})
	for i := 0; i < layers; i++ {
		diff := filepath.Join(home, fmt.Sprintf("layer%d", i), "diff")
		var nodes []fstest.Node
		switch i {
		case layers - 1: // the bottom layer
			nodes = []fstest.Node{
				{Path: "root0", UID: 0, GID: 0},
				{Path: "user1000", UID: 1000, GID: 1000},
				{Path: "home", Dir: true, UID: 1000, GID: 1000},
				{Path: "opq", Dir: true},
				{Path: "opq/hidden"},
				{Path: "gone"},
			}
		case layers - 2:
			nodes = []fstest.Node{
				{Path: "opq", Dir: true, Opaque: true},
				{Path: "opq/shown"},
				{Path: "gone", Whiteout: true},
			}
		default:
			nodes = []fstest.Node{{Path: fmt.Sprintf("file%d", i)}}
		}
		fstest.MakeTree(t, diff, nodes...)
		short := fmt.Sprintf("L%026d", i)
		if err := os.Symlink(filepath.Join("..", fmt.Sprintf("layer%d", i), "diff"), filepath.Join(home, "l", short)); err != nil {
			t.Fatal(err)
		}
		l.lowers = append(l.lowers, short)
	}
	return l
}

// mount mounts the container's overlay at merged the way Docker does.
func (l *dockerLayout) mount(t *testing.T, how int) {
	l.mountIndex(t, how, "off")
}

// mountIndex mounts with index=on or off (Docker and containerd use off).
func (l *dockerLayout) mountIndex(t *testing.T, how int, index string) {
	t.Helper()
	var lowers []string
	for _, short := range l.lowers {
		switch how {
		case absDiffs:
			link, err := filepath.EvalSymlinks(filepath.Join(l.home, "l", short))
			if err != nil {
				t.Fatal(err)
			}
			lowers = append(lowers, link)
		case absLinks:
			lowers = append(lowers, filepath.Join(l.home, "l", short))
		case relative:
			lowers = append(lowers, "l/"+short)
		}
	}
	upper, work, target := l.upper, l.work, l.merged
	if how == relative {
		upper, work, target = "cid/diff", "cid/work", "cid/merged"
		cwd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chdir(l.home); err != nil {
			t.Fatal(err)
		}
		defer os.Chdir(cwd)
	}
	opts := "index=" + index + ",lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay %s: %v", opts, err)
	}
	fstest.UnmountAtEnd(t, l.merged)
}

// rootfs calls Rootfs and tears it down at the end of the test.
func rootfs(t *testing.T, source, target string, table func() (MountTable, error)) {
	t.Helper()
	t.Cleanup(func() {
		if err := Teardown(target); err != nil {
			t.Error(err)
		}
	})
	if err := Rootfs(source, target, mapped(t, ctrUIDs, ctrGIDs), table); err != nil {
		t.Fatal(err)
	}
}

func TestRootfsOverlay(t *testing.T) {
	fstest.RequiresRoot(t)
	tests := []struct {
		name  string
		how   int
		index string
		// table: the caller hands in the mount table it read once.
		table bool
	}{
		{"absolute diff dirs", absDiffs, "off", false},
		{"absolute l links", absLinks, "off", false},
		{"relative from overlay2 dir", relative, "off", false},
		// The source's index=on does not stop a second overlay with
		// index=off on its upper.
		{"source with index", absLinks, "on", false},
		{"mount table given", absLinks, "off", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := fstest.TestDir(t)
			l := newDockerLayout(t, d, 2)
			l.mountIndex(t, tc.how, tc.index)
			target := filepath.Join(d, "run", "rootfs")
			var table func() (MountTable, error)
			asked := 0
			if tc.table {
				read, err := ReadMountTable()
				if err != nil {
					t.Fatal(err)
				}
				table = func() (MountTable, error) { asked++; return read, nil }
			}
			rootfs(t, l.merged, target, table)
			if tc.table && asked != 1 {
				t.Errorf("mount table asked for %d times, want once", asked)
			}
			checkContainerView(t, l, target)

			// A work dir of our own sits beside Docker's.
			works, _ := filepath.Glob(filepath.Join(l.id, workPrefix+"*"))
			if len(works) != 1 {
				t.Fatalf("work dirs beside upper: %v", works)
			}

			// Docker's mount is left alone and keeps working.
			if mounted := fstest.MountsUnder(t, l.merged); len(mounted) != 1 {
				t.Errorf("docker's overlay at %s: %v", l.merged, mounted)
			}
			if err := os.WriteFile(filepath.Join(l.merged, "root0"), []byte("docker"), 0o644); err != nil {
				t.Errorf("write through docker's overlay: %v", err)
			}
			if got := fstest.StatString(filepath.Join(l.upper, "root0")); got != "0:0 file" {
				t.Errorf("docker's copy-up of root0 on disk: %q", got)
			}

			teardownOverlay(t, target, works[0])
			if _, err := os.Lstat(l.work); err != nil {
				t.Errorf("docker's work dir after teardown: %v", err)
			}
			if mounted := fstest.MountsUnder(t, l.merged); len(mounted) != 1 {
				t.Errorf("docker's overlay after teardown: %v", mounted)
			}
		})
	}
}

// checkContainerView checks the image as a container with the mapping sees
// it at target, and what its writes leave in the upper layer on disk.
func checkContainerView(t *testing.T, l *dockerLayout, target string) {
	t.Helper()
	steps := []fstest.Step{
		{UID: 0, Op: "stat", Path: "/", Want: "0:0 dir"},
		{UID: 0, Op: "stat", Path: "root0", Want: "0:0 file"},
		{UID: 0, Op: "stat", Path: "user1000", Want: "1000:1000 file"},
		{UID: 0, Op: "stat", Path: "home", Want: "1000:1000 dir"},
		{UID: 0, Op: "ls", Path: "opq", Want: "shown"},
		{UID: 0, Op: "stat", Path: "gone", Want: "error: no such file or directory"},
		{UID: 0, Op: "mkfile", Path: "new0", Want: "ok"},
		{UID: 0, Op: "mkdir", Path: "dir0", Want: "ok"},
		{UID: 0, Op: "rm", Path: "user1000", Want: "ok"},
		{UID: 0, Op: "stat", Path: "user1000", Want: "error: no such file or directory"},
		{UID: 1000, Op: "mkfile", Path: "home/new1000", Want: "ok"},
		{UID: 1000, Op: "mkdir", Path: "home/dir1000", Want: "ok"},
		{UID: 1000, Op: "mkfile", Path: "denied", Want: "error: permission denied"},
	}
	fstest.RunSteps(t, sysMap(ctrUIDs), sysMap(ctrGIDs), target, steps)
	disk := map[string]string{
		"new0":         "0:0 file",
		"dir0":         "0:0 dir",
		"home":         "1000:1000 dir",
		"home/new1000": "1000:1000 file",
		"home/dir1000": "1000:1000 dir",
		"user1000":     "0:0 char 0:0", // a whiteout
	}
	fstest.CheckOnDisk(t, l.upper, disk)
	// The host sees the container's files as the container's host IDs.
	if got := fstest.StatString(filepath.Join(target, "home/new1000")); got != "101000:301000 file" {
		t.Errorf("host view of home/new1000: %q", got)
	}
}

func TestRootfsPlainDir(t *testing.T) {
	fstest.RequiresRoot(t)
	d := fstest.TestDir(t)
	bundle := filepath.Join(d, "bundle", "rootfs")
	fstest.MakeTree(t, bundle,
		fstest.Node{Path: "root0", UID: 0, GID: 0},
		fstest.Node{Path: "user1000", UID: 1000, GID: 1000},
		fstest.Node{Path: "tmp", Dir: true},
	)
	// A submount of the rootfs is mapped too (the bind is recursive).
	if err := unix.Mount("tmpfs", filepath.Join(bundle, "tmp"), "tmpfs", 0, "mode=1777"); err != nil {
		t.Fatal(err)
	}
	fstest.UnmountAtEnd(t, filepath.Join(bundle, "tmp"))
	target := filepath.Join(d, "run", "rootfs")
	// A plain directory cannot have an overlay mounted on it: the host's
	// mount table, which grows with every container, is not read.
	rootfs(t, bundle, target, func() (MountTable, error) {
		t.Error("mount table read for a rootfs on no overlay")
		return ReadMountTable()
	})

	got := fstest.Inside(t, sysMap(ctrUIDs), sysMap(ctrGIDs), 0, 0,
		"stat", filepath.Join(target, "root0"),
		"stat", filepath.Join(target, "user1000"),
		"stat", filepath.Join(target, "tmp"),
		"mkfile", filepath.Join(target, "new0"),
		"mkfile", filepath.Join(target, "tmp", "new0"))
	want := []string{"0:0 file", "1000:1000 file", "0:0 dir", "ok", "ok"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("inside: got %q, want %q", got, want)
	}
	for _, p := range []string{"new0", "tmp/new0"} {
		if got := fstest.StatString(filepath.Join(bundle, p)); got != "0:0 file" {
			t.Errorf("%s on disk is %q", p, got)
		}
	}
}

// TestRootfsSharedSource maps a plain dir on a shared mount with a host
// submount under it (as a bundle under a shared /run or /var/lib is). The
// rootfs must be a slave of the source, not a peer: mounts made under it
// do not reach the source, and Teardown's unmounts do not take the host's
// submounts with them.
func TestRootfsSharedSource(t *testing.T) {
	fstest.RequiresRoot(t)
	tests := []struct {
		name string
		src  string // the source, relative to the shared mount
	}{
		{"source is the shared mount point", "."},
		{"source is a dir in a shared mount", "bundle/rootfs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := fstest.TestDir(t)
			shared := filepath.Join(d, "shared")
			mountTmpfs(t, shared, 0)
			makeShared(t, shared)
			src := filepath.Join(shared, tc.src)
			fstest.MakeTree(t, src, fstest.Node{Path: "f"}, fstest.Node{Path: "mine", Dir: true},
				fstest.Node{Path: "later", Dir: true})
			sub := filepath.Join(src, "sub")
			mountTmpfs(t, sub, 0)
			fstest.MakeTree(t, sub, fstest.Node{Path: "marker"})
			// Only if a mount in the rootfs reached the source.
			fstest.UnmountAtEnd(t, filepath.Join(src, "mine"))
			if mi := mountInfoAt(t, sub); !strings.Contains(mi, "shared:") {
				t.Fatalf("source submount is not shared: %s", mi)
			}

			target := filepath.Join(d, "run", "rootfs")
			rootfs(t, src, target, nil)
			checkFile(t, filepath.Join(target, "sub/marker"), mappedRoot+" file", "marker")
			checkSlaveOf(t, src, target)

			if err := Teardown(target); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("target after teardown: %v", err)
			}
			// The host's mounts are all there, and nothing of the rootfs.
			want := []string{shared, filepath.Join(src, "later"), sub}
			if got := fstest.MountsUnder(t, d); !reflect.DeepEqual(got, want) {
				t.Errorf("mounts after teardown: %v, want %v", got, want)
			}
			checkFile(t, filepath.Join(sub, "marker"), "0:0 file", "marker")
		})
	}
}

func TestRootfsTargetMode(t *testing.T) {
	d := fstest.TestDir(t)
	target := filepath.Join(d, "a", "b", "rootfs")
	if _, _, err := makeTarget(target); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(d, "a"), filepath.Join(d, "a", "b"), target} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o711 {
			t.Errorf("%s: mode %v, %v; want 0711", p, fi.Mode(), err)
		}
	}
}

func TestRootfsErrors(t *testing.T) {
	fstest.RequiresRoot(t)
	tests := []struct {
		name string
		// setup returns the source and target, and may set up more.
		setup func(t *testing.T, d string) (source, target string)
		uids  []idmap.Mapping // ctrUIDs if nil
		want  string
	}{{
		name: "missing lower layer",
		setup: func(t *testing.T, d string) (string, string) {
			l := newDockerLayout(t, d, 3)
			l.mount(t, relative)
			// The mount holds the layers open; Rootfs resolves the names.
			if err := os.Remove(filepath.Join(l.home, "l", l.lowers[1])); err != nil {
				t.Fatal(err)
			}
			return l.merged, filepath.Join(d, "target")
		},
		want: "is missing",
	}, {
		name: "missing source",
		setup: func(t *testing.T, d string) (string, string) {
			return filepath.Join(d, "nope"), filepath.Join(d, "target")
		},
		want: "rootfs source: lstat %d/nope: no such file or directory",
	}, {
		name: "target is a mount point",
		setup: func(t *testing.T, d string) (string, string) {
			fstest.MakeTree(t, d, fstest.Node{Path: "src", Dir: true}, fstest.Node{Path: "target", Dir: true})
			tmpfs(t, filepath.Join(d, "target"))
			return filepath.Join(d, "src"), filepath.Join(d, "target")
		},
		want: "rootfs target %d/target is already a mount point",
	}, {
		name: "target not empty",
		setup: func(t *testing.T, d string) (string, string) {
			fstest.MakeTree(t, d, fstest.Node{Path: "src", Dir: true}, fstest.Node{Path: "target/x"})
			return filepath.Join(d, "src"), filepath.Join(d, "target")
		},
		want: "rootfs target %d/target: not empty",
	}, {
		name: "source cannot be ID-mapped",
		setup: func(t *testing.T, d string) (string, string) {
			fstest.MakeTree(t, d, fstest.Node{Path: "ramfs", Dir: true})
			ramfs(t, filepath.Join(d, "ramfs"))
			return filepath.Join(d, "ramfs"), filepath.Join(d, "target")
		},
		want: "the ramfs filesystem of %d/ramfs does not support ID-mapped mounts",
	}, {
		name: "proc as source",
		setup: func(t *testing.T, d string) (string, string) {
			return "/proc", filepath.Join(d, "target")
		},
		want: "the proc filesystem of /proc does not support ID-mapped mounts",
	}, {
		name: "submount cannot be ID-mapped",
		setup: func(t *testing.T, d string) (string, string) {
			fstest.MakeTree(t, d, fstest.Node{Path: "rootfs/dev", Dir: true})
			ramfs(t, filepath.Join(d, "rootfs/dev"))
			return filepath.Join(d, "rootfs"), filepath.Join(d, "target")
		},
		want: "the ramfs filesystem of %d/rootfs (mounted at %d/rootfs/dev) does not support ID-mapped mounts",
	}, {
		name: "no root mapping",
		setup: func(t *testing.T, d string) (string, string) {
			l := newDockerLayout(t, d, 2)
			l.mount(t, absLinks)
			return l.merged, filepath.Join(d, "target")
		},
		uids: []idmap.Mapping{{ContainerID: 1, HostID: 100001, Size: 100}},
		want: "no mapping for ID 0",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := fstest.TestDir(t)
			source, target := tc.setup(t, d)
			before := fstest.MountsUnder(t, d)
			_, statErr := os.Lstat(target)
			uids := ctrUIDs
			if tc.uids != nil {
				uids = tc.uids
			}
			err := Rootfs(source, target, mapped(t, uids, ctrGIDs), nil)
			if err == nil {
				Teardown(target)
				t.Fatal("no error")
			}
			t.Log(err)
			if want := strings.ReplaceAll(tc.want, "%d", d); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
			if after := fstest.MountsUnder(t, d); !reflect.DeepEqual(before, after) {
				t.Errorf("mounts before Rootfs %v, after %v", before, after)
			}
			if _, err := os.Lstat(target); (err == nil) != (statErr == nil) {
				t.Errorf("target existed before Rootfs: %v; after: %v", statErr == nil, err == nil)
			}
			works, _ := filepath.Glob(filepath.Join(d, "overlay2", "cid", workPrefix+"*"))
			if len(works) > 0 {
				t.Errorf("work dirs left: %v", works)
			}
		})
	}
}

// TestRootfsErrorsKeepTarget checks that a failed Rootfs removes the target
// only if it made it.
func TestRootfsErrorsKeepTarget(t *testing.T) {
	fstest.RequiresRoot(t)
	tests := []struct {
		name     string
		existing bool
	}{{"made by Rootfs", false}, {"there before", true}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := fstest.TestDir(t)
			target := filepath.Join(d, "run", "rootfs")
			if tc.existing {
				fstest.MakeTree(t, d, fstest.Node{Path: "run/rootfs", Dir: true})
			}
			if err := Rootfs("/proc", target, mapped(t, ctrUIDs, ctrGIDs), nil); err == nil {
				t.Fatal("no error")
			}
			_, err := os.Lstat(target)
			if exists := err == nil; exists != tc.existing {
				t.Errorf("target exists %v after failure, want %v", exists, tc.existing)
			}
			if _, err := os.Lstat(filepath.Join(d, "run")); (err == nil) != tc.existing {
				t.Errorf("target's parent after failure: %v", err)
			}
		})
	}
}

func TestTeardown(t *testing.T) {
	fstest.RequiresRoot(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, target string)
	}{{
		name:  "never made",
		setup: func(t *testing.T, target string) {},
	}, {
		name: "empty dir",
		setup: func(t *testing.T, target string) {
			fstest.MakeTree(t, filepath.Dir(target), fstest.Node{Path: filepath.Base(target), Dir: true})
		},
	}, {
		name: "stacked mounts and submounts",
		setup: func(t *testing.T, target string) {
			fstest.MakeTree(t, filepath.Dir(target), fstest.Node{Path: filepath.Base(target), Dir: true})
			tmpfs(t, target)
			tmpfs(t, target)
			fstest.MakeTree(t, target, fstest.Node{Path: "a/b", Dir: true})
			tmpfs(t, filepath.Join(target, "a"))
			fstest.MakeTree(t, target, fstest.Node{Path: "a/b", Dir: true})
			tmpfs(t, filepath.Join(target, "a/b"))
		},
	}, {
		name: "overlay rootfs",
		setup: func(t *testing.T, target string) {
			l := newDockerLayout(t, filepath.Dir(target), 2)
			l.mount(t, absLinks)
			if err := Rootfs(l.merged, target, mapped(t, ctrUIDs, ctrGIDs), nil); err != nil {
				t.Fatal(err)
			}
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := fstest.TestDir(t)
			target := filepath.Join(d, "rootfs")
			tc.setup(t, target)
			for i := 0; i < 2; i++ {
				if err := Teardown(target); err != nil {
					t.Fatalf("teardown %d: %v", i+1, err)
				}
				if left := fstest.MountsUnder(t, target); len(left) > 0 {
					t.Errorf("teardown %d left %v", i+1, left)
				}
				if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("teardown %d left target: %v", i+1, err)
				}
			}
			if works, _ := filepath.Glob(filepath.Join(d, "overlay2", "cid", workPrefix+"*")); len(works) > 0 {
				t.Errorf("work dirs left: %v", works)
			}
		})
	}
}

func TestParseOverlay(t *testing.T) {
	tests := []struct {
		name    string
		opts    string
		want    *idmap.Overlay
		wantErr string
	}{{
		name: "docker absolute",
		opts: "rw,lowerdir=/d/l/A:/d/l/B,upperdir=/d/c/diff,workdir=/d/c/work,index=off,uuid=on,xino=off",
		want: &idmap.Overlay{Lower: []string{"/d/l/A", "/d/l/B"}, Upper: "/d/c/diff", Options: []string{"index=off", "uuid=on"}},
	}, {
		name: "docker relative",
		opts: "rw,lowerdir=l/A:l/B,upperdir=c/diff,workdir=c/work",
		want: &idmap.Overlay{Lower: []string{"/base/l/A", "/base/l/B"}, Upper: "/base/c/diff", Options: []string{"index=off"}},
	}, {
		name: "kept options",
		opts: "rw,lowerdir=/a:/b,redirect_dir=on,metacopy=on,volatile,userxattr,nfs_export=on,index=on",
		want: &idmap.Overlay{Lower: []string{"/a", "/b"}, Options: []string{"index=off", "redirect_dir=on", "metacopy=on", "volatile", "userxattr"}},
	}, {
		name: "escaped paths",
		// A layer named `a,b:c d\e` given as `a\,b\:c d\\e`, then octal-escaped by mountinfo.
		opts: `rw,lowerdir=/x/a\134\054b\134:c\040d\134\134e:/y,upperdir=/u\040v,workdir=/w`,
		want: &idmap.Overlay{Lower: []string{`/x/a,b:c d\e`, "/y"}, Upper: "/u v", Options: []string{"index=off"}},
	}, {
		name: "lowerdir+",
		opts: "rw,lowerdir+=/a,lowerdir+=/b,upperdir=/u,workdir=/w",
		want: &idmap.Overlay{Lower: []string{"/a", "/b"}, Upper: "/u", Options: []string{"index=off"}},
	}, {
		name:    "made from fds",
		opts:    "rw,lowerdir+=/,lowerdir+=/,upperdir=/upper,workdir=/work",
		wantErr: "cannot be rebuilt",
	}, {
		name:    "data-only layers",
		opts:    "rw,lowerdir=/a::/data",
		wantErr: "data-only",
	}, {
		name:    "datadir+",
		opts:    "rw,lowerdir+=/a,datadir+=/data",
		wantErr: "data-only",
	}, {
		name:    "no lowerdir",
		opts:    "rw,upperdir=/u,workdir=/w",
		wantErr: "no lower layer",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseOverlay(tc.opts, "/base")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// BenchmarkRootfs measures Rootfs on a plain dir and on Docker-like
// overlays (teardown is not timed): go test -run '^$' -bench Rootfs ./mounts/
func BenchmarkRootfs(b *testing.B) {
	for _, layers := range []int{0, 1, 10} {
		name := fmt.Sprintf("overlay %d layers", layers)
		if layers == 0 {
			name = "plain dir"
		}
		b.Run(name, func(b *testing.B) { benchRootfs(b, layers) })
	}
}

func benchRootfs(b *testing.B, layers int) {
	home := filepath.Join(b.TempDir(), "overlay2")
	var lowers []string
	for i := 0; i < layers; i++ {
		diff := filepath.Join(home, fmt.Sprintf("layer%d", i), "diff")
		if err := os.MkdirAll(filepath.Join(diff, "etc"), 0o755); err != nil {
			b.Fatal(err)
		}
		lowers = append(lowers, diff)
	}
	for _, p := range []string{"cid/diff", "cid/work", "cid/merged"} {
		if err := os.MkdirAll(filepath.Join(home, p), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	source := filepath.Join(home, "cid/merged")
	if layers > 0 {
		opts := "index=off,lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + home + "/cid/diff,workdir=" + home + "/cid/work"
		if err := unix.Mount("overlay", source, "overlay", 0, opts); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { unix.Unmount(source, unix.MNT_DETACH) })
	}
	target := filepath.Join(home, "rootfs")
	b.Cleanup(func() { Teardown(target) })
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// A namespace per create, as the runtime makes one.
		userns := &idmap.Userns{UIDs: ctrUIDs, GIDs: ctrGIDs}
		err := Rootfs(source, target, userns, nil)
		userns.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := Teardown(target); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

func tmpfs(t *testing.T, dir string) {
	t.Helper()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	fstest.UnmountAtEnd(t, dir)
}

func ramfs(t *testing.T, dir string) {
	t.Helper()
	if err := unix.Mount("ramfs", dir, "ramfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	fstest.UnmountAtEnd(t, dir)
}

// Device nodes that come with the image (a lower layer), that land in the
// container's upper layer (docker cp), or that lie in a plain directory
// rootfs cannot be opened through the container's rootfs: it is nodev.
func TestRootfsNoDevices(t *testing.T) {
	fstest.RequiresRoot(t)
	mknull := func(t *testing.T, path string) {
		t.Helper()
		if err := unix.Mknod(path, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, d string) (source string, nodes []string)
	}{
		{"overlay", func(t *testing.T, d string) (string, []string) {
			l := newDockerLayout(t, d, 2)
			lower, err := filepath.EvalSymlinks(filepath.Join(l.home, "l", l.lowers[0]))
			if err != nil {
				t.Fatal(err)
			}
			mknull(t, filepath.Join(lower, "image-null"))
			mknull(t, filepath.Join(l.upper, "copied-null"))
			l.mount(t, absLinks)
			return l.merged, []string{"image-null", "copied-null"}
		}},
		{"plain dir", func(t *testing.T, d string) (string, []string) {
			src := filepath.Join(d, "rootfs")
			fstest.MakeTree(t, src, fstest.Node{Path: "tmp", Dir: true})
			mknull(t, filepath.Join(src, "null"))
			return src, []string{"null"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := fstest.TestDir(t)
			source, nodes := tt.setup(t, d)
			target := filepath.Join(d, "run", "rootfs")
			rootfs(t, source, target, nil)
			for _, n := range nodes {
				if err := os.WriteFile(filepath.Join(source, n), []byte("x"), 0); err != nil {
					t.Fatalf("the node %s must open at the source, or the test shows nothing: %v", n, err)
				}
				if err := os.WriteFile(filepath.Join(target, n), []byte("x"), 0); !errors.Is(err, unix.EACCES) {
					t.Errorf("open %s through the container's rootfs: %v, want EACCES", n, err)
				}
			}
		})
	}
}

// mapped is a user namespace of these mappings for ID-mapped mounts, closed
// when the test ends.
func mapped(t testing.TB, uids, gids []idmap.Mapping) *idmap.Userns {
	u := &idmap.Userns{UIDs: uids, GIDs: gids}
	t.Cleanup(u.Close)
	return u
}

// Detach takes the rootfs off the mount table and leaves what Teardown
// needs: the target and the record of the overlay's work dir, which
// Teardown then removes.
func TestDetachThenTeardown(t *testing.T) {
	fstest.RequiresRoot(t)
	d := fstest.TestDir(t)
	l := newDockerLayout(t, d, 2)
	l.mount(t, absLinks)
	target := filepath.Join(d, "run", "rootfs")
	if err := Rootfs(l.merged, target, mapped(t, ctrUIDs, ctrGIDs), nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := Detach(target); err != nil {
			t.Fatalf("detach %d: %v", i+1, err)
		}
	}
	if left := fstest.MountsUnder(t, target); len(left) > 0 {
		t.Errorf("detach left %v", left)
	}
	works, _ := filepath.Glob(filepath.Join(l.id, workPrefix+"*"))
	if len(works) != 1 {
		t.Fatalf("work dirs after detach: %v", works)
	}
	if _, err := os.Stat(filepath.Join(target, workRecord)); err != nil {
		t.Errorf("work dir record after detach: %v", err)
	}
	teardownOverlay(t, target, works[0])
	if mounted := fstest.MountsUnder(t, l.merged); len(mounted) != 1 {
		t.Errorf("docker's overlay after teardown: %v", mounted)
	}
}

// teardownOverlay tears down the overlay rootfs at target and checks that
// the target and moat's work dir are gone.
func teardownOverlay(t *testing.T, target, work string) {
	t.Helper()
	if err := Teardown(target); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("target after teardown: %v", err)
	}
	if _, err := os.Lstat(work); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work dir after teardown: %v", err)
	}
}
