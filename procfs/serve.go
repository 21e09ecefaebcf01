package procfs

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Views are the containers whose files one FUSE filesystem serves, each
// in a directory named by its ID: <mount>/<id>/meminfo, cpuinfo, stat,
// swaps and online (for /sys/devices/system/cpu/online). A file's content
// is made when it is opened, from the container's cgroup at that moment.
type Views struct {
	host    Host
	mu      sync.Mutex
	cgroups map[string]*Cgroup
}

// NewViews serves no container yet; h is where the host's files are read.
func NewViews(h Host) *Views {
	return &Views{host: h, cgroups: map[string]*Cgroup{}}
}

// Add serves container id, whose resources are cg's.
func (v *Views) Add(id string, cg *Cgroup) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.cgroups[id] = cg
}

// Remove stops serving container id: its directory is gone.
func (v *Views) Remove(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.cgroups, id)
}

func (v *Views) cgroup(id string) *Cgroup {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.cgroups[id]
}

func (v *Views) ids() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]string, 0, len(v.cgroups))
	for id := range v.cgroups {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// viewFiles are the files of a container's directory.
var viewFiles = []string{"cpuinfo", "meminfo", "online", "stat", "swaps"}

// File makes file name of container id.
func (v *Views) File(id, name string) ([]byte, error) {
	cg := v.cgroup(id)
	if cg == nil {
		return nil, fmt.Errorf("container %s: %w", id, syscall.ENOENT)
	}
	switch name {
	case "meminfo":
		return v.host.Meminfo(cg)
	case "swaps":
		return v.host.Swaps(cg)
	case "cpuinfo", "stat", "online":
		cpus, err := v.host.CPUs(cg)
		if err != nil {
			return nil, err
		}
		switch name {
		case "cpuinfo":
			return v.host.Cpuinfo(cpus)
		case "stat":
			return v.host.Stat(cpus)
		}
		return Online(len(cpus)), nil
	}
	return nil, fmt.Errorf("%s: %w", name, syscall.ENOENT)
}

// Mount serves v on dir until the returned server is unmounted. The
// kernel is asked directly (no fusermount), and every user may read, the
// containers' users among them.
func (v *Views) Mount(dir string) (*fuse.Server, error) {
	// Containers come and go: the kernel asks again after a second.
	ttl := time.Second
	root := &rootNode{v: v}
	srv, err := fs.Mount(dir, root, &fs.Options{
		EntryTimeout: &ttl,
		AttrTimeout:  &ttl,
		MountOptions: fuse.MountOptions{
			AllowOther:        true,
			DirectMountStrict: true,
			FsName:            "moat",
			Name:              "moat-views",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("mount the /proc and /sys views on %s: %w", dir, err)
	}
	return srv, nil
}

type rootNode struct {
	fs.Inode
	v *Views
}

var (
	_ fs.NodeLookuper  = (*rootNode)(nil)
	_ fs.NodeReaddirer = (*rootNode)(nil)
)

func (r *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if r.v.cgroup(name) == nil {
		return nil, syscall.ENOENT
	}
	out.Mode = fuse.S_IFDIR | 0o555
	return r.NewInode(ctx, &dirNode{v: r.v, id: name}, fs.StableAttr{Mode: fuse.S_IFDIR}), 0
}

func (r *rootNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	var ents []fuse.DirEntry
	for _, id := range r.v.ids() {
		ents = append(ents, fuse.DirEntry{Name: id, Mode: fuse.S_IFDIR})
	}
	return fs.NewListDirStream(ents), 0
}

type dirNode struct {
	fs.Inode
	v  *Views
	id string
}

var (
	_ fs.NodeLookuper  = (*dirNode)(nil)
	_ fs.NodeReaddirer = (*dirNode)(nil)
)

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	for _, f := range viewFiles {
		if f == name {
			// Size 0, as the kernel's own /proc files: readers read to
			// the end.
			out.Mode = fuse.S_IFREG | 0o444
			return d.NewInode(ctx, &fileNode{v: d.v, id: d.id, name: name}, fs.StableAttr{Mode: fuse.S_IFREG}), 0
		}
	}
	return nil, syscall.ENOENT
}

func (d *dirNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	ents := make([]fuse.DirEntry, 0, len(viewFiles))
	for _, f := range viewFiles {
		ents = append(ents, fuse.DirEntry{Name: f, Mode: fuse.S_IFREG})
	}
	return fs.NewListDirStream(ents), 0
}

type fileNode struct {
	fs.Inode
	v        *Views
	id, name string
}

var (
	_ fs.NodeOpener    = (*fileNode)(nil)
	_ fs.NodeGetattrer = (*fileNode)(nil)
)

func (f *fileNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFREG | 0o444
	return 0
}

func (f *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EACCES
	}
	b, err := f.v.File(f.id, f.name)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return nil, 0, errno
		}
		return nil, 0, syscall.EIO
	}
	// Direct I/O: no page cache, every open reads what is now.
	return &content{b: b}, fuse.FOPEN_DIRECT_IO, 0
}

// content is one open file's bytes, made at open as the kernel makes a
// /proc file's: a reader sees one consistent version.
type content struct{ b []byte }

var _ fs.FileReader = (*content)(nil)

func (c *content) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(c.b)) {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), int64(len(c.b)))
	return fuse.ReadResultData(c.b[off:end]), 0
}
