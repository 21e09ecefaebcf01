package mounts

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/idmap"
	"github.com/moatrt/moat/internal/fstest"
)

// The host view of files owned by 0 and 1000 on disk, through ctrUIDs and
// ctrGIDs.
const (
	mappedRoot = "100000:300000"
	mapped1000 = "101000:301000"
)

func bindUserns(t *testing.T) *os.File {
	t.Helper()
	ns, err := idmap.NewUserns(ctrUIDs, ctrGIDs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

func openSource(t *testing.T, path string) *Source {
	t.Helper()
	s, err := OpenSource(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// staging returns <d>/staging, torn down when the test ends.
func staging(t *testing.T, d string) string {
	t.Helper()
	dir := filepath.Join(d, "staging")
	t.Cleanup(func() {
		if err := TeardownStaged(dir); err != nil {
			t.Error(err)
		}
	})
	return dir
}

// listen makes a unix socket at path that accepts one connection and
// answers it with "hello".
func listen(t *testing.T, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Write([]byte("hello"))
		c.Close()
	}()
}

// dial connects to the socket at path and returns what it says.
func dial(path string) (string, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 16)
	n, err := c.Read(b)
	return string(b[:n]), err
}

func mountTmpfs(t *testing.T, dir string, flags uintptr) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", flags, "mode=755"); err != nil {
		t.Fatal(err)
	}
	fstest.UnmountAtEnd(t, dir)
}

func makeShared(t *testing.T, dir string) {
	t.Helper()
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
}

func bindMount(t *testing.T, src, dst string, flags uintptr) {
	t.Helper()
	if err := unix.Mount(src, dst, "", unix.MS_BIND|flags, ""); err != nil {
		t.Fatalf("bind %s to %s: %v", src, dst, err)
	}
	fstest.UnmountAtEnd(t, dst)
}

func mountInfoAt(t *testing.T, path string) string {
	t.Helper()
	m, err := idmap.MountOf(path)
	if err != nil {
		t.Fatal(err)
	}
	return m.Mountpoint + " " + m.Options + " [" + m.Optional + "]"
}

func TestOpenSource(t *testing.T) {
	fstest.RequiresRoot(t)
	tests := []struct {
		name  string
		path  string // under the test dir
		want  string // Source.Path under the test dir
		isDir bool
	}{
		{"file", "a", "a", false},
		{"dir", "dir", "dir", true},
		{"socket", "sock", "sock", false},
		{"device node", "/dev/null", "/dev/null", false},
		{"absolute symlink to file", "link-abs", "a", false},
		{"absolute symlink to dir", "link-dir", "dir", true},
		{"relative symlink", "sub/link-rel", "a", false},
		{"symlink to symlink", "link-link", "a", false},
		{"dot-dot", "sub/../a", "a", false},
		{"dot-dot after a symlinked dir", "link-dir/../a", "a", false},
		{"through a symlinked dir", "link-dir/f", "dir/f", false},
		{"trailing slash on dir", "dir/", "dir", true},
	}
	d := fstest.TestDir(t)
	fstest.MakeTree(t, d, fstest.Node{Path: "a"}, fstest.Node{Path: "dir/f"}, fstest.Node{Path: "sub", Dir: true})
	listen(t, filepath.Join(d, "sock"))
	for link, to := range map[string]string{
		"link-abs":     filepath.Join(d, "a"),
		"link-dir":     filepath.Join(d, "dir"),
		"sub/link-rel": "../a",
		"link-link":    "link-abs",
	} {
		if err := os.Symlink(to, filepath.Join(d, link)); err != nil {
			t.Fatal(err)
		}
	}
	under := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(d, p)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// filepath.Join would clean the path: keep its dots and slashes.
			path := tc.path
			if !filepath.IsAbs(path) {
				path = d + "/" + path
			}
			s := openSource(t, path)
			if s.Path != under(tc.want) {
				t.Errorf("Path = %q, want %q", s.Path, under(tc.want))
			}
			if s.IsDir() != tc.isDir {
				t.Errorf("IsDir = %v, want %v", s.IsDir(), tc.isDir)
			}
			if err := s.Close(); err != nil {
				t.Error(err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("second close: %v", err)
			}
		})
	}
}

func TestOpenSourceErrors(t *testing.T) {
	fstest.RequiresRoot(t)
	tests := []struct {
		name     string
		path     string // %d is the test dir
		want     string
		notExist bool
	}{
		{"relative", "a", "bind mount source a: not an absolute path", false},
		{"empty", "", "bind mount source : not an absolute path", false},
		{"missing", "%d/nope", "bind mount source %d/nope: no such file or directory", true},
		{"missing parent", "%d/nope/a", "bind mount source %d/nope/a: no such file or directory", true},
		{"dangling symlink", "%d/dangling", "bind mount source %d/dangling: dangling symlink to %d/nope: no such file or directory", true},
		{"dangling relative symlink", "%d/dangling-rel", "bind mount source %d/dangling-rel: dangling symlink to nope: no such file or directory", true},
		{"symlink loop", "%d/loop1", "bind mount source %d/loop1: too many levels of symbolic links", false},
		{"file as a dir", "%d/a/x", "bind mount source %d/a/x: not a directory", false},
	}
	d := fstest.TestDir(t)
	fstest.MakeTree(t, d, fstest.Node{Path: "a"})
	for link, to := range map[string]string{
		"dangling":     filepath.Join(d, "nope"),
		"dangling-rel": "nope",
		"loop1":        "loop2",
		"loop2":        "loop1",
	} {
		if err := os.Symlink(to, filepath.Join(d, link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := OpenSource(strings.ReplaceAll(tc.path, "%d", d))
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			if want := strings.ReplaceAll(tc.want, "%d", d); err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
			if errors.Is(err, fs.ErrNotExist) != tc.notExist {
				t.Errorf("errors.Is(%v, fs.ErrNotExist) = %v", err, !tc.notExist)
			}
		})
	}
}

// TestFdPath checks the name found for a file held open after what
// happens to its path.
func TestFdPath(t *testing.T) {
	fstest.RequiresRoot(t)
	tests := []struct {
		name   string
		file   string // opened, under the test dir
		change func(t *testing.T, d string)
		want   string // the path, or "error: " and the message
	}{{
		name:   "unchanged",
		file:   "f",
		change: func(t *testing.T, d string) {},
		want:   "%d/f",
	}, {
		name:   "deleted",
		file:   "f",
		change: func(t *testing.T, d string) { rm(t, d, "f") },
		want:   "error: %d/f was deleted",
	}, {
		name:   "deleted dir",
		file:   "dir",
		change: func(t *testing.T, d string) { rm(t, d, "dir") },
		want:   "error: %d/dir was deleted",
	}, {
		name: "deleted name of a file with another link",
		file: "f",
		change: func(t *testing.T, d string) {
			if err := os.Link(filepath.Join(d, "f"), filepath.Join(d, "g")); err != nil {
				t.Fatal(err)
			}
			rm(t, d, "f")
		},
		want: "error: %d/f was deleted",
	}, {
		name:   "a name that ends like a deleted one",
		file:   "x (deleted)",
		change: func(t *testing.T, d string) {},
		want:   "%d/x (deleted)",
	}, {
		name: "renamed",
		file: "f",
		change: func(t *testing.T, d string) {
			if err := os.Rename(filepath.Join(d, "f"), filepath.Join(d, "dir", "g")); err != nil {
				t.Fatal(err)
			}
		},
		want: "%d/dir/g",
	}, {
		name:   "mounted over",
		file:   "dir",
		change: func(t *testing.T, d string) { mountTmpfs(t, filepath.Join(d, "dir"), 0) },
		want:   "error: %d/dir no longer names the opened file",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := fstest.TestDir(t)
			fstest.MakeTree(t, d, fstest.Node{Path: "f"}, fstest.Node{Path: "x (deleted)"}, fstest.Node{Path: "dir", Dir: true})
			fd, err := unix.Open(filepath.Join(d, tc.file), unix.O_PATH|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			tc.change(t, d)
			got, _, err := fdPath(fd)
			if err != nil {
				got = "error: " + err.Error()
			}
			if want := strings.ReplaceAll(tc.want, "%d", d); got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func rm(t *testing.T, d, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(d, name)); err != nil {
		t.Fatal(err)
	}
}

// TestStage stages each kind of source and checks what the staged path
// shows, from the host, with the container's mapping.
func TestStage(t *testing.T) {
	fstest.RequiresRoot(t)
	tests := []struct {
		name string
		// setup makes the source under d and returns the path to open.
		setup func(t *testing.T, d string) string
		// swap runs between the open and Stage.
		swap func(t *testing.T, d string)
		// check looks at the staged path.
		check func(t *testing.T, staged string)
	}{{
		name: "dir",
		setup: func(t *testing.T, d string) string {
			fstest.MakeTree(t, d, fstest.Node{Path: "src", Dir: true},
				fstest.Node{Path: "src/root0"}, fstest.Node{Path: "src/user1000", UID: 1000, GID: 1000})
			return filepath.Join(d, "src")
		},
		check: func(t *testing.T, staged string) {
			want := map[string]string{
				"":         mappedRoot + " dir",
				"root0":    mappedRoot + " file",
				"user1000": mapped1000 + " file",
			}
			for p, w := range want {
				if got := fstest.StatString(filepath.Join(staged, p)); got != w {
					t.Errorf("staged %q is %q, want %q", p, got, w)
				}
			}
		},
	}, {
		name: "regular file",
		setup: func(t *testing.T, d string) string {
			fstest.MakeTree(t, d, fstest.Node{Path: "a", UID: 1000, GID: 1000})
			return filepath.Join(d, "a")
		},
		check: func(t *testing.T, staged string) {
			checkFile(t, staged, mapped1000+" file", "a")
		},
	}, {
		name: "unix socket",
		setup: func(t *testing.T, d string) string {
			listen(t, filepath.Join(d, "sock"))
			return filepath.Join(d, "sock")
		},
		check: func(t *testing.T, staged string) {
			if got := fstest.StatString(staged); got != mappedRoot+" other" {
				t.Errorf("staged socket is %q", got)
			}
			if got, err := dial(staged); err != nil || got != "hello" {
				t.Errorf("through the staged socket: %q, %v", got, err)
			}
		},
	}, {
		// Not /dev/null itself: devtmpfs cannot be ID-mapped.
		name: "device node",
		setup: func(t *testing.T, d string) string {
			if err := unix.Mknod(filepath.Join(d, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(d, "null")
		},
		check: func(t *testing.T, staged string) {
			if got := fstest.StatString(staged); got != mappedRoot+" char 1:3" {
				t.Errorf("staged null is %q", got)
			}
			// Staged mounts are nodev: a container gets devices only
			// through the nodes the runtime binds for it.
			if err := os.WriteFile(staged, []byte("x"), 0); !errors.Is(err, unix.EACCES) {
				t.Errorf("write through staged null: %v, want EACCES (nodev)", err)
			}
		},
	}, {
		name: "symlink to a file swapped after the open",
		setup: func(t *testing.T, d string) string {
			fstest.MakeTree(t, d, fstest.Node{Path: "a"}, fstest.Node{Path: "b", UID: 1000, GID: 1000})
			symlink(t, filepath.Join(d, "a"), filepath.Join(d, "link"))
			return filepath.Join(d, "link")
		},
		swap: func(t *testing.T, d string) {
			rm(t, d, "link")
			symlink(t, filepath.Join(d, "b"), filepath.Join(d, "link"))
		},
		check: func(t *testing.T, staged string) {
			checkFile(t, staged, mappedRoot+" file", "a")
		},
	}, {
		name: "symlink to a dir swapped after the open",
		setup: func(t *testing.T, d string) string {
			fstest.MakeTree(t, d, fstest.Node{Path: "dir-a/only-a"}, fstest.Node{Path: "dir-b/only-b"})
			symlink(t, "dir-a", filepath.Join(d, "link"))
			return filepath.Join(d, "link")
		},
		swap: func(t *testing.T, d string) {
			rm(t, d, "link")
			symlink(t, "dir-b", filepath.Join(d, "link"))
		},
		check: func(t *testing.T, staged string) {
			checkLs(t, staged, "only-a")
		},
	}, {
		name: "dir renamed and replaced after the open",
		setup: func(t *testing.T, d string) string {
			fstest.MakeTree(t, d, fstest.Node{Path: "src/old"})
			return filepath.Join(d, "src")
		},
		swap: func(t *testing.T, d string) {
			if err := os.Rename(filepath.Join(d, "src"), filepath.Join(d, "moved")); err != nil {
				t.Fatal(err)
			}
			fstest.MakeTree(t, d, fstest.Node{Path: "src/new"})
		},
		check: func(t *testing.T, staged string) {
			checkLs(t, staged, "old")
		},
	}}
	ns := bindUserns(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := fstest.TestDir(t)
			s := openSource(t, tc.setup(t, d))
			if tc.swap != nil {
				tc.swap(t, d)
			}
			dir := staging(t, d)
			staged := filepath.Join(dir, "0")
			if err := s.Stage(staged, ns, false); err != nil {
				t.Fatal(err)
			}
			tc.check(t, staged)
			m, err := idmap.MountOf(staged)
			if err != nil {
				t.Fatal(err)
			}
			if m.Mountpoint != staged || !strings.Contains(","+m.Options+",", ",idmapped,") {
				t.Errorf("mount at %s: %s %s", staged, m.Mountpoint, m.Options)
			}
			if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("staging dir: %v, %v; want mode 0700", fi.Mode(), err)
			}
		})
	}
}

func symlink(t *testing.T, to, link string) {
	t.Helper()
	if err := os.Symlink(to, link); err != nil {
		t.Fatal(err)
	}
}

func checkFile(t *testing.T, path, wantStat, wantData string) {
	t.Helper()
	if got := fstest.StatString(path); got != wantStat {
		t.Errorf("%s is %q, want %q", path, got, wantStat)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != wantData {
		t.Errorf("%s holds %q, %v; want %q", path, b, err, wantData)
	}
}

func checkLs(t *testing.T, dir string, want ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s holds %q, want %q", dir, got, want)
	}
}

// TestStagedBindKeepsMapping binds the staged path the ways libcontainer
// does (by path, recursive or not, and from an O_PATH fd): the bind is the
// same ID-mapped mount.
func TestStagedBindKeepsMapping(t *testing.T) {
	fstest.RequiresRoot(t)
	tests := []struct {
		name  string
		flags uintptr
		viaFd bool
	}{
		{"MS_BIND", 0, false},
		{"MS_BIND|MS_REC", unix.MS_REC, false},
		{"MS_BIND from an O_PATH fd", 0, true},
		{"MS_BIND|MS_REC from an O_PATH fd", unix.MS_REC, true},
	}
	ns := bindUserns(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := fstest.TestDir(t)
			fstest.MakeTree(t, d, fstest.Node{Path: "src/root0"}, fstest.Node{Path: "src/user1000", UID: 1000, GID: 1000},
				fstest.Node{Path: "file", UID: 1000, GID: 1000},
				fstest.Node{Path: "bind", Dir: true}, fstest.Node{Path: "bind-file"})
			dir := staging(t, d)
			for i, src := range []string{"src", "file"} {
				if err := openSource(t, filepath.Join(d, src)).Stage(filepath.Join(dir, strconv.Itoa(i)), ns, true); err != nil {
					t.Fatal(err)
				}
			}
			for i, dst := range []string{"bind", "bind-file"} {
				src := filepath.Join(dir, strconv.Itoa(i))
				if tc.viaFd {
					fd, err := unix.Open(src, unix.O_PATH|unix.O_CLOEXEC, 0)
					if err != nil {
						t.Fatal(err)
					}
					defer unix.Close(fd)
					src = "/proc/self/fd/" + strconv.Itoa(fd)
				}
				bindMount(t, src, filepath.Join(d, dst), tc.flags)
			}
			want := map[string]string{
				"bind":          mappedRoot + " dir",
				"bind/root0":    mappedRoot + " file",
				"bind/user1000": mapped1000 + " file",
				"bind-file":     mapped1000 + " file",
			}
			fstest.CheckOnDisk(t, d, want)
			if mi := mountInfoAt(t, filepath.Join(d, "bind")); !strings.Contains(mi, ",idmapped") {
				t.Errorf("bind: %s", mi)
			}
			// A container root writes as its root: on disk, as 0.
			got := fstest.Inside(t, sysMap(ctrUIDs), sysMap(ctrGIDs), 0, 0,
				"mkfile", filepath.Join(d, "bind", "new0"),
				"stat", filepath.Join(d, "bind", "user1000"))
			if want := []string{"ok", "1000:1000 file"}; !reflect.DeepEqual(got, want) {
				t.Errorf("inside: %q, want %q", got, want)
			}
			if got := fstest.StatString(filepath.Join(d, "src", "new0")); got != "0:0 file" {
				t.Errorf("new0 on disk is %q", got)
			}
		})
	}
}

func TestStageRecursive(t *testing.T) {
	fstest.RequiresRoot(t)
	tests := []struct {
		recursive bool
		want      string
	}{
		{false, "error: no such file or directory"},
		{true, mappedRoot + " file"},
	}
	for _, tc := range tests {
		t.Run("recursive="+strconv.FormatBool(tc.recursive), func(t *testing.T) {
			d := fstest.TestDir(t)
			fstest.MakeTree(t, d, fstest.Node{Path: "src/f", UID: 1000, GID: 1000})
			mountTmpfs(t, filepath.Join(d, "src/sub"), 0)
			fstest.MakeTree(t, d, fstest.Node{Path: "src/sub/g"})
			ns := bindUserns(t)
			staged := filepath.Join(staging(t, d), "0")
			if err := openSource(t, filepath.Join(d, "src")).Stage(staged, ns, tc.recursive); err != nil {
				t.Fatal(err)
			}
			if got := fstest.StatString(filepath.Join(staged, "f")); got != mapped1000+" file" {
				t.Errorf("f is %q", got)
			}
			if got := fstest.StatString(filepath.Join(staged, "sub/g")); got != tc.want {
				t.Errorf("sub/g is %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStageErrors(t *testing.T) {
	fstest.RequiresRoot(t)
	tests := []struct {
		name string
		// setup returns the source to open, and may set up more. The
		// target is <d>/staging/0 unless target is set.
		setup     func(t *testing.T, d string) string
		target    string
		recursive bool
		// before runs between the open and Stage.
		before func(t *testing.T, d string, s *Source)
		want   string
	}{{
		name: "target exists",
		setup: func(t *testing.T, d string) string {
			fstest.MakeTree(t, d, fstest.Node{Path: "a"}, fstest.Node{Path: "staging/0"})
			return filepath.Join(d, "a")
		},
		want: "make staging target %d/staging/0: file exists",
	}, {
		name: "target exists as a dir",
		setup: func(t *testing.T, d string) string {
			fstest.MakeTree(t, d, fstest.Node{Path: "src", Dir: true}, fstest.Node{Path: "staging/0", Dir: true})
			return filepath.Join(d, "src")
		},
		want: "make staging target %d/staging/0: file exists",
	}, {
		name: "target's parent is a file",
		setup: func(t *testing.T, d string) string {
			fstest.MakeTree(t, d, fstest.Node{Path: "a"}, fstest.Node{Path: "staging"})
			return filepath.Join(d, "a")
		},
		want: "staging/0: not a directory",
	}, {
		name: "source cannot be ID-mapped",
		setup: func(t *testing.T, d string) string {
			fstest.MakeTree(t, d, fstest.Node{Path: "ramfs", Dir: true})
			ramfs(t, filepath.Join(d, "ramfs"))
			return filepath.Join(d, "ramfs")
		},
		want: "stage bind mount source %d/ramfs: ID-map %d/ramfs: the ramfs filesystem of %d/ramfs does not support ID-mapped mounts",
	}, {
		name: "proc",
		setup: func(t *testing.T, d string) string {
			return "/proc/self/"
		},
		want: "the proc filesystem of /proc/",
	}, {
		name: "submount cannot be ID-mapped",
		setup: func(t *testing.T, d string) string {
			fstest.MakeTree(t, d, fstest.Node{Path: "src/sub", Dir: true})
			ramfs(t, filepath.Join(d, "src/sub"))
			return filepath.Join(d, "src")
		},
		recursive: true,
		want:      "the ramfs filesystem of %d/src (mounted at %d/src/sub) does not support ID-mapped mounts",
	}, {
		name: "source already ID-mapped",
		setup: func(t *testing.T, d string) string {
			fstest.MakeTree(t, d, fstest.Node{Path: "src/f"})
			staged := filepath.Join(d, "other/0")
			t.Cleanup(func() { TeardownStaged(filepath.Join(d, "other")) })
			if err := openSource(t, filepath.Join(d, "src")).Stage(staged, bindUserns(t), false); err != nil {
				t.Fatal(err)
			}
			return staged
		},
		want: "stage bind mount source %d/other/0: ID-map %d/other/0: %d/other/0 is already an ID-mapped mount",
	}, {
		name: "source deleted after the open",
		setup: func(t *testing.T, d string) string {
			fstest.MakeTree(t, d, fstest.Node{Path: "a"})
			return filepath.Join(d, "a")
		},
		before: func(t *testing.T, d string, s *Source) { rm(t, d, "a") },
		want:   "stage bind mount source %d/a: %d/a was deleted",
	}, {
		name: "source closed",
		setup: func(t *testing.T, d string) string {
			fstest.MakeTree(t, d, fstest.Node{Path: "a"})
			return filepath.Join(d, "a")
		},
		before: func(t *testing.T, d string, s *Source) { s.Close() },
		want:   "stage bind mount source %d/a: source is closed",
	}, {
		name: "parent is a shared mount point",
		setup: func(t *testing.T, d string) string {
			fstest.MakeTree(t, d, fstest.Node{Path: "a"})
			mountTmpfs(t, filepath.Join(d, "staging"), 0)
			makeShared(t, filepath.Join(d, "staging"))
			return filepath.Join(d, "a")
		},
		want: "staging dir %d/staging is a shared mount point",
	}, {
		name: "target exists in a dir on a shared mount",
		setup: func(t *testing.T, d string) string {
			fstest.MakeTree(t, d, fstest.Node{Path: "a"})
			mountTmpfs(t, filepath.Join(d, "shared"), 0)
			makeShared(t, filepath.Join(d, "shared"))
			fstest.MakeTree(t, d, fstest.Node{Path: "shared/binds/0"})
			return filepath.Join(d, "a")
		},
		target: "shared/binds/0",
		want:   "make staging target %d/shared/binds/0: file exists",
	}, {
		// Fails after making the parents and the private bind of the
		// last one, which must all go again.
		name: "missing parents on a shared mount",
		setup: func(t *testing.T, d string) string {
			fstest.MakeTree(t, d, fstest.Node{Path: "a"})
			mountTmpfs(t, filepath.Join(d, "shared"), 0)
			makeShared(t, filepath.Join(d, "shared"))
			return filepath.Join(d, "a")
		},
		target: "shared/x/binds/" + strings.Repeat("n", 256),
		want:   "file name too long",
	}}
	ns := bindUserns(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := fstest.TestDir(t)
			src := tc.setup(t, d)
			target := filepath.Join(d, "staging/0")
			if tc.target != "" {
				target = filepath.Join(d, tc.target)
			}
			s := openSource(t, src)
			if tc.before != nil {
				tc.before(t, d, s)
			}
			before := fstest.MountsUnder(t, d)
			existed := existing(t, d)
			err := s.Stage(target, ns, tc.recursive)
			if err == nil {
				TeardownStaged(filepath.Dir(target))
				t.Fatal("no error")
			}
			t.Log(err)
			if want := strings.ReplaceAll(tc.want, "%d", d); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
			if after := fstest.MountsUnder(t, d); !reflect.DeepEqual(before, after) {
				t.Errorf("mounts before Stage %v, after %v", before, after)
			}
			if after := existing(t, d); !reflect.DeepEqual(existed, after) {
				t.Errorf("files before Stage %v, after %v", existed, after)
			}
		})
	}
}

// existing lists what is under d.
func existing(t *testing.T, d string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
		out = append(out, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStageSharedParent stages in a dir on a shared mount that has a peer
// (as /run has in other mount namespaces): nothing appears in the peer.
func TestStageSharedParent(t *testing.T) {
	fstest.RequiresRoot(t)
	d := fstest.TestDir(t)
	fstest.MakeTree(t, d, fstest.Node{Path: "a"}, fstest.Node{Path: "src/f"}, fstest.Node{Path: "peer", Dir: true})
	shared := filepath.Join(d, "shared")
	mountTmpfs(t, shared, 0)
	makeShared(t, shared)
	bindMount(t, shared, filepath.Join(d, "peer"), 0)
	if mi := mountInfoAt(t, filepath.Join(d, "peer")); !strings.Contains(mi, "shared:") {
		t.Fatalf("peer is not shared: %s", mi)
	}
	ns := bindUserns(t)
	dir := filepath.Join(shared, "ctr", "binds")
	t.Cleanup(func() { TeardownStaged(dir) })
	for i, src := range []string{"a", "src"} {
		if err := openSource(t, filepath.Join(d, src)).Stage(filepath.Join(dir, strconv.Itoa(i)), ns, i == 1); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{shared, dir, filepath.Join(dir, "0"), filepath.Join(dir, "1")}
	if got := fstest.MountsUnder(t, shared); !reflect.DeepEqual(got, want) {
		t.Errorf("mounts under %s: %v, want %v", shared, got, want)
	}
	// The private bind of the staging dir itself reaches the peer, as any
	// mount in a shared mount does, but nothing staged in it does.
	peer := filepath.Join(d, "peer")
	if got, want := fstest.MountsUnder(t, peer), []string{peer, filepath.Join(peer, "ctr/binds")}; !reflect.DeepEqual(got, want) {
		t.Errorf("mounts under the peer: %v, want %v", got, want)
	}
	if got := fstest.StatString(filepath.Join(peer, "ctr/binds/0")); got != "0:0 file" {
		t.Errorf("peer's view of the staged file: %q", got)
	}
	for _, p := range want[1:] {
		if mi := mountInfoAt(t, p); strings.Contains(mi, "shared:") {
			t.Errorf("staging mount is shared: %s", mi)
		}
	}
	checkFile(t, filepath.Join(dir, "0"), mappedRoot+" file", "a")
	if err := TeardownStaged(dir); err != nil {
		t.Fatal(err)
	}
	if got := fstest.MountsUnder(t, shared); !reflect.DeepEqual(got, []string{shared}) {
		t.Errorf("mounts under %s after teardown: %v", shared, got)
	}
	if got := fstest.MountsUnder(t, peer); !reflect.DeepEqual(got, []string{peer}) {
		t.Errorf("mounts under the peer after teardown: %v", got)
	}
	checkLs(t, filepath.Join(shared, "ctr"))
}

// TestStageSharedSource stages a shared mount with a submount (as Docker's
// /var/lib/docker is): the staged tree receives the host's later mounts
// under the source, like an rslave bind, but sends nothing back, and
// tearing it down leaves the source's submounts alone.
func TestStageSharedSource(t *testing.T) {
	fstest.RequiresRoot(t)
	d := fstest.TestDir(t)
	src := filepath.Join(d, "src")
	mountTmpfs(t, src, 0)
	makeShared(t, src)
	fstest.MakeTree(t, src, fstest.Node{Path: "f"}, fstest.Node{Path: "mine", Dir: true}, fstest.Node{Path: "later", Dir: true})
	mountTmpfs(t, filepath.Join(src, "sub"), 0)
	fstest.MakeTree(t, src, fstest.Node{Path: "sub/g"})
	ns := bindUserns(t)
	dir := staging(t, d)
	staged := filepath.Join(dir, "0")
	if err := openSource(t, src).Stage(staged, ns, true); err != nil {
		t.Fatal(err)
	}
	checkFile(t, filepath.Join(staged, "sub/g"), mappedRoot+" file", "sub/g")
	checkSlaveOf(t, src, staged)

	if err := TeardownStaged(dir); err != nil {
		t.Fatal(err)
	}
	want := []string{src, filepath.Join(src, "later"), filepath.Join(src, "sub")}
	if got := fstest.MountsUnder(t, src); !reflect.DeepEqual(got, want) {
		t.Errorf("source mounts after teardown: %v, want %v", got, want)
	}
}

func TestTeardownStaged(t *testing.T) {
	fstest.RequiresRoot(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, d, dir string)
		// sources must still be there after the teardown.
		sources []string
	}{{
		name:  "never made",
		setup: func(t *testing.T, d, dir string) {},
	}, {
		name: "empty dir",
		setup: func(t *testing.T, d, dir string) {
			fstest.MakeTree(t, dir, fstest.Node{Path: "0", Dir: true}, fstest.Node{Path: "1"})
		},
	}, {
		name: "several staged mounts",
		setup: func(t *testing.T, d, dir string) {
			fstest.MakeTree(t, d, fstest.Node{Path: "src/f"}, fstest.Node{Path: "file"})
			mountTmpfs(t, filepath.Join(d, "src/sub"), 0)
			listen(t, filepath.Join(d, "sock"))
			ns := bindUserns(t)
			for i, src := range []string{"src", "file", "sock", "src", "src/f"} {
				if err := openSource(t, filepath.Join(d, src)).Stage(filepath.Join(dir, strconv.Itoa(i)), ns, i == 0); err != nil {
					t.Fatal(err)
				}
			}
			// Stacked on a staged mount and below one.
			mountTmpfs(t, filepath.Join(dir, "3"), 0)
			mountTmpfs(t, filepath.Join(dir, "0", "sub"), 0)
			if got := len(fstest.MountsUnder(t, dir)); got != 8 {
				t.Errorf("%d mounts staged: %v", got, fstest.MountsUnder(t, dir))
			}
		},
		sources: []string{"src/f", "file", "sock"},
	}, {
		// Not on a staged mount: only the mount table shows it.
		name: "a mount deeper in a plain dir",
		setup: func(t *testing.T, d, dir string) {
			fstest.MakeTree(t, dir, fstest.Node{Path: "5/deep", Dir: true})
			mountTmpfs(t, filepath.Join(dir, "5", "deep"), 0)
		},
	}, {
		name: "on a shared mount",
		setup: func(t *testing.T, d, dir string) {
			fstest.MakeTree(t, d, fstest.Node{Path: "file"})
			mountTmpfs(t, filepath.Dir(dir), 0)
			makeShared(t, filepath.Dir(dir))
			ns := bindUserns(t)
			if err := openSource(t, filepath.Join(d, "file")).Stage(filepath.Join(dir, "0"), ns, false); err != nil {
				t.Fatal(err)
			}
		},
	}}
	for _, tc := range tests {
		// A running container's staged mounts are detached first.
		for _, detach := range []bool{false, true} {
			name := tc.name
			if detach {
				name += ", detached first"
			}
			t.Run(name, func(t *testing.T) { teardownStaged(t, tc.setup, tc.sources, detach) })
		}
	}
}

func teardownStaged(t *testing.T, setup func(t *testing.T, d, dir string), sources []string, detach bool) {
	d := fstest.TestDir(t)
	dir := filepath.Join(d, "run", "binds")
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	setup(t, d, dir)
	if detach {
		if err := DetachStaged(dir); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		if err := TeardownStaged(dir); err != nil {
			t.Fatalf("teardown %d: %v", i+1, err)
		}
		if left := fstest.MountsUnder(t, dir); len(left) > 0 {
			t.Errorf("teardown %d left %v", i+1, left)
		}
		if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("teardown %d left %s: %v", i+1, dir, err)
		}
	}
	for _, p := range sources {
		if _, err := os.Lstat(filepath.Join(d, p)); err != nil {
			t.Errorf("source %s after teardown: %v", p, err)
		}
	}
}

// TestRemoveStagingKeepsMounts checks that teardown never deletes
// through a mount it did not remove.
func TestRemoveStagingKeepsMounts(t *testing.T) {
	fstest.RequiresRoot(t)
	d := fstest.TestDir(t)
	dir := filepath.Join(d, "binds")
	fstest.MakeTree(t, d, fstest.Node{Path: "binds/0", Dir: true}, fstest.Node{Path: "host/keep"})
	bindMount(t, filepath.Join(d, "host"), filepath.Join(dir, "0"), 0)
	err := removeStaging(dir)
	if err == nil || !strings.Contains(err.Error(), dir+"/0 is mounted again") {
		t.Errorf("error %v", err)
	}
	if _, err := os.Lstat(filepath.Join(d, "host/keep")); err != nil {
		t.Errorf("file under the mount: %v", err)
	}
}

// Staging makes the dirs containers share (the mount dir, a state root's
// dir) searchable, and closes only the container's own staging dir: the
// container's root walks through the shared ones to its rootfs.
func TestStageDirModes(t *testing.T) {
	fstest.RequiresRoot(t)
	d := fstest.TestDir(t)
	src := filepath.Join(d, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(d, "mounts", "roothash")
	dir := staging(t, shared)
	if err := openSource(t, src).Stage(filepath.Join(dir, "0"), bindUserns(t), false); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{
		filepath.Join(d, "mounts"): 0o711,
		shared:                     0o711,
		dir:                        0o700,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s has mode %o, want %o", path, got, want)
		}
	}
}

// checkSlaveOf checks that clone, a recursive clone of the shared mount at
// src with a submount "sub", is a slave of it: a mount made in the clone
// does not reach src, and one made under src later (at "later") shows in
// the clone.
func checkSlaveOf(t *testing.T, src, clone string) {
	t.Helper()
	for _, p := range []string{clone, filepath.Join(clone, "sub")} {
		if mi := mountInfoAt(t, p); strings.Contains(mi, "shared:") || !strings.Contains(mi, "master:") {
			t.Errorf("mount is not a slave of its source: %s", mi)
		}
	}
	mountTmpfs(t, filepath.Join(clone, "mine"), 0)
	if got := fstest.MountsUnder(t, filepath.Join(src, "mine")); len(got) != 0 {
		t.Errorf("a mount in the clone reached the source: %v", got)
	}
	mountTmpfs(t, filepath.Join(src, "later"), 0)
	if got := fstest.MountsUnder(t, filepath.Join(clone, "later")); len(got) != 1 {
		t.Errorf("a mount under the source after cloning, in the clone: %v", got)
	}
}

// Staged device nodes belong to the container's IDs, have the modes asked
// for and open (their tmpfs is not nodev); teardown leaves nothing.
func TestStageDevices(t *testing.T) {
	fstest.RequiresRoot(t)
	d := fstest.TestDir(t)
	dir := filepath.Join(d, "staging", "c1@binds", "devices")
	nodes := []Node{
		{Name: "0", Type: unix.S_IFCHR, Major: 1, Minor: 3, Perm: 0o660, UID: 100000, GID: 300000},
		{Name: "1", Type: unix.S_IFIFO, Perm: 0o600, UID: 100005, GID: 300005},
	}
	if err := StageDevices(dir, nodes); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { TeardownStaged(filepath.Dir(dir)) })
	for _, c := range []struct{ name, want string }{{"0", "100000:300000 char 1:3"}, {"1", "100005:300005 other"}} {
		if got := fstest.StatString(filepath.Join(dir, c.name)); got != c.want {
			t.Errorf("node %s is %q, want %q", c.name, got, c.want)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "0"), &st); err != nil || st.Mode&0o777 != 0o660 {
		t.Errorf("mode of node 0: %o %v", st.Mode&0o777, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "0"), []byte("x"), 0); err != nil {
		t.Errorf("write through the staged null: %v", err)
	}
	if err := TeardownStaged(filepath.Dir(dir)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("staging dir after teardown: %v", err)
	}

	// A bad node fails the whole stage and leaves nothing mounted.
	bad := filepath.Join(d, "staging", "c2@binds", "devices")
	err := StageDevices(bad, []Node{nodes[0], {Name: "../x", Type: unix.S_IFCHR, Major: 1, Minor: 3}})
	if err == nil {
		t.Fatal("a node named ../x was staged")
	}
	if left := fstest.MountsUnder(t, bad); len(left) > 0 {
		t.Errorf("%s still mounted after a failed stage: %v", bad, left)
	}
	if _, err := os.Stat(filepath.Join(bad, "0")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("node of a failed stage: %v", err)
	}
}
