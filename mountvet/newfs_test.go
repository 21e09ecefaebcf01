package mountvet

import (
	"reflect"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// The container's proc and sysfs as an init with docker's masks sees
// them: read-only paths are binds of proc itself, masks are copied from
// where they are, parents come before children.
func TestViewsOf(t *testing.T) {
	ms := []*mountinfo.Info{
		{ID: 1, Parent: 0, Major: 0, Minor: 40, Root: "/", Mountpoint: "/", FSType: "overlay", Options: "rw"},
		{ID: 2, Parent: 1, Major: 0, Minor: 42, Root: "/", Mountpoint: "/proc", FSType: "proc", Options: "rw,nosuid,nodev,noexec"},
		{ID: 3, Parent: 2, Major: 0, Minor: 42, Root: "/sys", Mountpoint: "/proc/sys", FSType: "proc", Options: "ro,nosuid"},
		{ID: 4, Parent: 2, Major: 0, Minor: 6, Root: "/null", Mountpoint: "/proc/keys", FSType: "devtmpfs", Options: "rw"},
		{ID: 9, Parent: 3, Major: 0, Minor: 60, Root: "/", Mountpoint: "/proc/sys/fs/binfmt_misc", FSType: "binfmt_misc", Options: "rw"},
		{ID: 5, Parent: 1, Major: 0, Minor: 50, Root: "/", Mountpoint: "/sys", FSType: "sysfs", Options: "ro,nosuid,nodev,noexec"},
		{ID: 6, Parent: 5, Major: 0, Minor: 51, Root: "/", Mountpoint: "/sys/firmware", FSType: "tmpfs", Options: "ro"},
		{ID: 7, Parent: 1, Major: 0, Minor: 70, Root: "/", Mountpoint: "/process", FSType: "tmpfs", Options: "rw"},
	}
	got := viewsOf(ms)
	want := map[string]FSView{
		"proc": {FSType: "proc", Base: "/proc", Locks: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, Subs: []ViewMount{
			{Rel: "sys", Self: "sys", Locks: unix.MS_RDONLY | unix.MS_NOSUID},
			{Rel: "keys"},
			{Rel: "sys/fs/binfmt_misc"},
		}},
		"sysfs": {FSType: "sysfs", Base: "/sys", Locks: unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, Subs: []ViewMount{
			{Rel: "firmware", Locks: unix.MS_RDONLY},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("views:\n got %+v\nwant %+v", got, want)
	}
	if v := viewsOf(ms[:1]); len(v) != 0 {
		t.Fatalf("no proc or sysfs, yet views %+v", v)
	}
}

func TestBelow(t *testing.T) {
	tab := map[int]*mountinfo.Info{
		1: {ID: 1, Parent: 1},
		2: {ID: 2, Parent: 1},
		3: {ID: 3, Parent: 2},
		4: {ID: 4, Parent: 3},
		5: {ID: 5, Parent: 1},
	}
	for _, c := range []struct {
		m, top int
		want   bool
	}{{4, 2, true}, {3, 2, true}, {5, 2, false}, {2, 2, false}, {4, 5, false}} {
		if got := below(tab, tab[c.m], c.top); got != c.want {
			t.Errorf("below(%d, %d) = %t, want %t", c.m, c.top, got, c.want)
		}
	}
}
