package mountvet

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"unsafe"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

func info(id int, major, minor int, root, mp, opts string) *mountinfo.Info {
	return &mountinfo.Info{ID: id, Major: major, Minor: minor, Root: root, Mountpoint: mp, Options: opts}
}

func TestLocksAndProtection(t *testing.T) {
	c := &Container{ID: "c", initial: map[int]known{}, own: map[int]known{}}
	for _, m := range []*mountinfo.Info{
		info(1, 0, 50, "/", "/", "rw,relatime"),                       // rootfs
		info(2, 254, 0, "/home/u", "/mnt", "ro,nodev,relatime"),       // read-only volume
		info(3, 0, 22, "/", "/proc", "rw,nosuid,nodev,noexec"),        // proc
		info(4, 0, 22, "/sys", "/proc/sys", "ro,nosuid,nodev,noexec"), // read-only path
		info(5, 0, 30, "/null", "/proc/keys", "rw,nosuid"),            // mask
	} {
		c.initial[m.ID] = known{ref: refOf(m), locks: flagsOf(m.Options)}
	}
	c.own[40] = known{ref: mountRef{dev: "0:60", root: "/"}}
	tests := []struct {
		name      string
		m         *mountinfo.Info
		locks     lock
		protected bool
	}{
		{"the volume", info(2, 254, 0, "/home/u", "/mnt", "ro"), unix.MS_RDONLY | unix.MS_NODEV, true},
		{"a bind of a volume's subdir", info(41, 254, 0, "/home/u/sub", "/b", "ro"), unix.MS_RDONLY | unix.MS_NODEV, false},
		{"a copy of the volume in another namespace", info(90, 254, 0, "/home/u", "/mnt", "ro"), unix.MS_RDONLY | unix.MS_NODEV, true},
		{"a bind of /proc/sys/kernel", info(42, 0, 22, "/sys/kernel", "/k", "ro"), unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, false},
		{"a copy of the mask", info(91, 0, 30, "/null", "/x/proc/keys", "rw"), unix.MS_NOSUID, true},
		{"its own tmpfs", info(40, 0, 60, "/", "/root/t", "rw"), 0, false},
		{"a new mount reusing the number of an initial one", info(2, 0, 61, "/", "/tmp", "rw"), 0, false},
		{"an unknown mount of another filesystem", info(77, 0, 62, "/", "/x", "rw"), 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.locksOf(tc.m); got != tc.locks {
				t.Errorf("locks %#x, want %#x", got, tc.locks)
			}
			if got := c.protected(tc.m); got != tc.protected {
				t.Errorf("protected %v, want %v", got, tc.protected)
			}
		})
	}
}

func TestMountAttrs(t *testing.T) {
	tests := []struct {
		name     string
		flags    uintptr
		set, clr uint64
	}{
		{"rw clears every flag, keeps atime", unix.MS_REMOUNT | unix.MS_BIND,
			0, unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC | unix.MOUNT_ATTR_NOSYMFOLLOW},
		{"ro,nosuid", unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID,
			unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID, unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC | unix.MOUNT_ATTR_NOSYMFOLLOW},
		{"noatime sets the atime mode", unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NOATIME,
			unix.MOUNT_ATTR_NOATIME, unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC | unix.MOUNT_ATTR_NOSYMFOLLOW | unix.MOUNT_ATTR__ATIME | unix.MOUNT_ATTR_NODIRATIME},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set, clr := mountAttrs(tc.flags)
			if set != tc.set || clr != tc.clr {
				t.Errorf("got set %#x clr %#x, want %#x %#x", set, clr, tc.set, tc.clr)
			}
		})
	}
}

func TestInside(t *testing.T) {
	p := filepath.Join(t.TempDir(), "uid_map")
	if err := os.WriteFile(p, []byte("         0     100000      65536\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host uint64
		in   uint64
		ok   bool
	}{
		{100000, 0, true}, {101000, 1000, true}, {165535, 65535, true},
		{165536, 0, false}, {99999, 0, false},
		{1000, 0, false}, // already an ID of the namespace's own
	}
	for _, tc := range tests {
		in, ok := inside(p, tc.host)
		if ok != tc.ok || (ok && in != tc.in) {
			t.Errorf("inside(%d) = %d, %v; want %d, %v", tc.host, in, ok, tc.in, tc.ok)
		}
	}
}

func TestReadString(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "mem")
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 9000)
	copy(data[10:], "/mnt\x00")
	for i := 100; i < 8999; i++ {
		data[i] = 'a'
	}
	copy(data[4090:], "/across/page\x00")
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if s, err := readString(f, 10, unix.PathMax); err != nil || s != "/mnt" {
		t.Errorf("got %q, %v", s, err)
	}
	if s, err := readString(f, 4090, unix.PathMax); err != nil || s != "/across/page" {
		t.Errorf("across a page: got %q, %v", s, err)
	}
	if _, err := readString(f, 5000, 100); err != unix.ENAMETOOLONG {
		t.Errorf("too long: got %v", err)
	}
	if _, err := readString(f, 20000, 100); err != unix.EFAULT {
		t.Errorf("past the end: got %v", err)
	}
}

// procMem reads another thread's memory as readString needs it: up to a
// page end, and an unmapped address fails.
func TestProcMem(t *testing.T) {
	page := os.Getpagesize()
	mem, err := unix.Mmap(-1, 0, 2*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	base := uint64(uintptr(unsafe.Pointer(&mem[0])))
	munmap := func(addr uint64, n int) error {
		_, _, e := unix.Syscall(unix.SYS_MUNMAP, uintptr(addr), uintptr(n), 0)
		if e != 0 {
			return e
		}
		return nil
	}
	defer munmap(base, 2*page)
	copy(mem[page-6:], "/acros")
	copy(mem[page:], "s/page\x00")
	// The second page unmapped would end the string with EFAULT.
	self := procMem(unix.Gettid())
	if s, err := readString(self, base+uint64(page-6), unix.PathMax); err != nil || s != "/across/page" {
		t.Fatalf("got %q, %v", s, err)
	}
	// Read ahead: the same, from one read of what the first page holds.
	ahead := readAhead(self, base+uint64(page-6), 0, base+10)
	if s, err := readString(ahead, base+uint64(page-6), unix.PathMax); err != nil || s != "/across/page" {
		t.Fatalf("read ahead: got %q, %v", s, err)
	}
	if s, err := readString(ahead, base+10, unix.PathMax); err != nil || s != "" {
		t.Fatalf("read ahead: got %q, %v", s, err)
	}
	if err := munmap(base+uint64(page), page); err != nil {
		t.Fatal(err)
	}
	if _, err := readString(self, base+uint64(page-6), unix.PathMax); err != unix.EFAULT {
		t.Fatalf("a string running into an unmapped page: %v, want EFAULT", err)
	}
	ahead = readAhead(self, base+uint64(page-6), base+uint64(page)+8)
	if _, err := readString(ahead, base+uint64(page-6), unix.PathMax); err != unix.EFAULT {
		t.Fatalf("read ahead, a string running into an unmapped page: %v, want EFAULT", err)
	}
	if _, err := readString(ahead, base+uint64(page)+8, unix.PathMax); err != unix.EFAULT {
		t.Fatalf("read ahead of an unmapped page: %v, want EFAULT", err)
	}
}

// A restored container decides as the one whose record it is.
func TestRecordRoundTrip(t *testing.T) {
	c := &Container{ID: "c", initial: map[int]known{
		10: {ref: mountRef{"0:42", "/"}, locks: unix.MS_RDONLY | unix.MS_NOSUID},
		11: {ref: mountRef{"8:1", "/vol"}},
	}, own: map[int]known{20: {ref: mountRef{"0:50", "/"}, locks: unix.MS_NODEV}}}
	rec, _ := c.Record()
	r := Restore(rec)
	if !reflect.DeepEqual(r.initial, c.initial) || !reflect.DeepEqual(r.own, c.own) || r.ID != c.ID {
		t.Fatalf("restored %+v %+v, want %+v %+v", r.initial, r.own, c.initial, c.own)
	}
}
