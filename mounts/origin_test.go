package mounts

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/internal/fstest"
)

func TestOrigins(t *testing.T) {
	root := &mountinfo.Info{ID: 1, Major: 254, Minor: 0, Root: "/", Mountpoint: "/", FSType: "ext4"}
	run := &mountinfo.Info{ID: 2, Major: 0, Minor: 25, Root: "/", Mountpoint: "/run", FSType: "tmpfs"}
	vol := func(id int, root string) *mountinfo.Info {
		return &mountinfo.Info{ID: id, Major: 254, Minor: 0, Root: root, Mountpoint: "/var/lib/docker/volumes/hr/_data", FSType: "ext4"}
	}
	tests := []struct {
		name      string
		path      string
		mnt       int
		table     MountTable
		recursive bool
		want      []string
	}{
		{"plain dir on the root filesystem", "/home/u", 1, MountTable{root, run}, false, nil},
		{"a volume that binds /", "/var/lib/docker/volumes/hr/_data", 3, MountTable{root, run, vol(3, "/")}, false, []string{"/"}},
		{"inside a volume that binds /", "/var/lib/docker/volumes/hr/_data/etc", 3, MountTable{root, vol(3, "/")}, false, []string{"/etc"}},
		{"a volume that binds /etc", "/var/lib/docker/volumes/hr/_data", 3, MountTable{root, vol(3, "/etc")}, false, []string{"/etc"}},
		{"a volume of a whole tmpfs mounted elsewhere", "/var/lib/docker/volumes/hr/_data", 3, MountTable{root, run,
			{ID: 3, Major: 0, Minor: 25, Root: "/", Mountpoint: "/var/lib/docker/volumes/hr/_data"}}, false, []string{"/run"}},
		{"a tmpfs of its own", "/var/lib/docker/volumes/hr/_data", 3, MountTable{root, run,
			{ID: 3, Major: 0, Minor: 99, Root: "/", Mountpoint: "/var/lib/docker/volumes/hr/_data"}}, false, nil},
		{"the widest view wins over a narrower bind", "/var/lib/docker/volumes/hr/_data", 3, MountTable{
			{ID: 4, Major: 254, Minor: 0, Root: "/srv", Mountpoint: "/mnt/srv"}, root, vol(3, "/srv/x")}, false, []string{"/srv/x"}},
		{"only a narrower view", "/var/lib/docker/volumes/hr/_data", 3, MountTable{
			{ID: 4, Major: 254, Minor: 0, Root: "/srv", Mountpoint: "/mnt/srv"}, vol(3, "/srv/x")}, false, []string{"/mnt/srv/x"}},
		{"submounts come along with rbind", "/var/lib/docker/volumes/hr/_data", 3, MountTable{root, run,
			{ID: 3, Major: 0, Minor: 99, Root: "/", Mountpoint: "/var/lib/docker/volumes/hr/_data"},
			{ID: 5, Parent: 3, Major: 0, Minor: 25, Root: "/docker.sock", Mountpoint: "/var/lib/docker/volumes/hr/_data/s"}}, true, []string{"/run/docker.sock"}},
		{"submounts ignored without rbind", "/var/lib/docker/volumes/hr/_data", 3, MountTable{root, run,
			{ID: 3, Major: 0, Minor: 99, Root: "/", Mountpoint: "/var/lib/docker/volumes/hr/_data"},
			{ID: 5, Parent: 3, Major: 0, Minor: 25, Root: "/docker.sock", Mountpoint: "/var/lib/docker/volumes/hr/_data/s"}}, false, nil},
		{"an overlay's layers", "/var/lib/docker/volumes/ov/_data/x", 3, MountTable{root,
			{ID: 3, Major: 0, Minor: 70, Root: "/", Mountpoint: "/var/lib/docker/volumes/ov/_data", FSType: "overlay",
				VFSOptions: `rw,lowerdir=/nonexistent/l1:/nonexistent/l\:2,upperdir=/nonexistent/u,workdir=/nonexistent/w`}},
			false, []string{"/nonexistent/l1/x", "/nonexistent/l:2/x", "/nonexistent/u/x", "/nonexistent/w/x"}},
		{"the host's own root on an overlay is not judged by its layers", "/home/u", 1, MountTable{
			{ID: 1, Major: 0, Minor: 70, Root: "/", Mountpoint: "/", FSType: "overlay", VFSOptions: "lowerdir=/elsewhere"}}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := origins(tt.path, uint64(tt.mnt), tt.table, tt.recursive)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("origins %q, want %q", got, tt.want)
			}
		})
	}
}

// On the kernel: a directory with a bind of another directory on it, as
// docker's local driver makes a volume of type none, o=bind.
func TestOriginsOfBoundVolume(t *testing.T) {
	fstest.RequiresRoot(t)
	d := fstest.TestDir(t)
	fstest.MakeTree(t, d, fstest.Node{Path: "secret/etc/f"}, fstest.Node{Path: "volumes/hr/_data", Dir: true})
	data := filepath.Join(d, "volumes/hr/_data")
	if err := unix.Mount(filepath.Join(d, "secret"), data, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	fstest.UnmountAtEnd(t, data)
	for _, tc := range []struct{ path, want string }{
		{data, filepath.Join(d, "secret")},
		{filepath.Join(data, "etc"), filepath.Join(d, "secret/etc")},
	} {
		src, err := OpenSource(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		table, err := ReadMountTable()
		if err != nil {
			t.Fatal(err)
		}
		got, err := src.Origins(table, true)
		src.Close()
		if err != nil {
			t.Fatal(err)
		}
		real, _ := filepath.EvalSymlinks(tc.want)
		if !slices.Contains(got, real) {
			t.Errorf("origins of %s: %q, want %s among them", tc.path, got, real)
		}
	}
}

// The origins are those of the mount the source holds open: a mount put
// over the path after the open (an attacker racing the check) changes
// nothing, and neither does unmounting the bind from under it.
func TestOriginsHeldAcrossSwap(t *testing.T) {
	fstest.RequiresRoot(t)
	d := fstest.TestDir(t)
	fstest.MakeTree(t, d, fstest.Node{Path: "secret/f"}, fstest.Node{Path: "benign", Dir: true}, fstest.Node{Path: "volumes/hr/_data", Dir: true})
	data := filepath.Join(d, "volumes/hr/_data")
	if err := unix.Mount(filepath.Join(d, "secret"), data, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	fstest.UnmountAtEnd(t, data)
	src, err := OpenSource(data)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for _, swap := range []func() error{
		func() error { return unix.Mount(filepath.Join(d, "benign"), data, "", unix.MS_BIND, "") },
		func() error { return unix.Unmount(data, unix.MNT_DETACH) },
		func() error { return unix.Unmount(data, unix.MNT_DETACH) },
	} {
		if err := swap(); err != nil {
			t.Fatal(err)
		}
		table, err := ReadMountTable()
		if err != nil {
			t.Fatal(err)
		}
		got, err := src.Origins(table, false)
		if err != nil {
			// Detached from the tree, the held mount is in no table:
			// no origin can be named, and the source must not mount.
			if !strings.Contains(err.Error(), "not in mountinfo") {
				t.Fatalf("origins after the swap: %v", err)
			}
			continue
		}
		secret, _ := filepath.EvalSymlinks(filepath.Join(d, "secret"))
		if !slices.Contains(got, secret) {
			t.Errorf("origins after the swap: %q, want %s among them", got, secret)
		}
	}
}
