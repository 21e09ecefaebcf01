package mounts

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/idmap"
	"github.com/moatrt/moat/internal/undo"
)

// A bind mount's source is checked against the policy and mounted as one
// object: OpenSource holds it open, Path says where it really is (for the
// policy), and Stage mounts what was opened, ID-mapped, at a path of moat's
// own. A symlink or directory swapped after the open changes nothing. The
// container's mount then names the staged path, which only root can change.

// Source is a bind-mount source held open.
type Source struct {
	// Path is the real absolute path of the object opened, with every
	// symlink and ".." resolved, as the kernel names the open file.
	Path string

	f    *os.File // O_PATH: opens no device, FIFO or socket
	mode uint32   // S_IFMT bits
}

// OpenSource opens the bind-mount source at the absolute path, following
// symlinks, without opening the object itself for reading or writing.
func OpenSource(path string) (*Source, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("bind mount source %s: not an absolute path", path)
	}
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, sourceError(path, err)
	}
	real, st, err := fdPath(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind mount source %s: %w", path, err)
	}
	return &Source{Path: real, f: os.NewFile(uintptr(fd), real), mode: st.Mode & unix.S_IFMT}, nil
}

// sourceError explains a failed open of path, naming the symlink that
// leads nowhere if that is why.
func sourceError(path string, err error) error {
	if errors.Is(err, unix.ENOENT) {
		if to, lerr := os.Readlink(path); lerr == nil {
			return fmt.Errorf("bind mount source %s: dangling symlink to %s: %w", path, to, err)
		}
	}
	return fmt.Errorf("bind mount source %s: %w", path, err)
}

// fdPath returns the absolute path that names the open file fd now, and its
// stat. The kernel's name for it (/proc/self/fd/N) is checked to lead back
// to the same object: a file deleted since the open is named "<path>
// (deleted)", and a path mounted over or renamed leads elsewhere.
func fdPath(fd int) (string, *unix.Stat_t, error) {
	link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", nil, fmt.Errorf("name of open file: %w", err)
	}
	var held, named unix.Stat_t
	if err := unix.Fstat(fd, &held); err != nil {
		return "", nil, fmt.Errorf("fstat %s: %w", link, err)
	}
	if !filepath.IsAbs(link) {
		// Outside this process's root or not a file of any filesystem.
		return "", nil, fmt.Errorf("open file has no path (%s)", link)
	}
	lerr := unix.Lstat(link, &named)
	if lerr == nil && named.Dev == held.Dev && named.Ino == held.Ino {
		return link, &held, nil
	}
	// Only now is " (deleted)" the kernel's mark: a name may end so too.
	if base, ok := strings.CutSuffix(link, " (deleted)"); ok {
		return "", nil, fmt.Errorf("%s was deleted", base)
	}
	return "", nil, fmt.Errorf("%s no longer names the opened file", link)
}

// Close releases the source. Closing twice is not an error.
func (s *Source) Close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	if err != nil {
		return fmt.Errorf("close bind mount source %s: %w", s.Path, err)
	}
	return nil
}

// IsDir reports whether the source is a directory.
func (s *Source) IsDir() bool { return s.mode == unix.S_IFDIR }

// Stage attaches an ID-mapped clone of the opened object at target: the
// clone is mapped through userns and, when recursive (rbind), holds the
// source's submounts, mapped too. target is created to match the source: a
// directory for a directory, an empty regular file for anything else
// (regular file, socket, device node, FIFO). target must not exist yet;
// its missing parents are created (the staging dir itself 0700: only root
// walks to a staged mount; libcontainer asks its host-side helper to open
// what it cannot).
//
// The staged mounts propagate nothing. Each is a slave of its source:
// it still receives what the host mounts under the source later (as an
// rslave bind would), but an unmount under the staged tree never reaches
// the source's peers. And if the mount that holds target's parent is
// shared, the parent is first made a private bind mount of itself, so
// that the staged mounts do not appear in that mount's peers (other mount
// namespaces). TeardownStaged of a dir at or above the parent undoes all.
//
// On error nothing is left mounted or created.
func (s *Source) Stage(target string, userns *os.File, recursive bool) error {
	if s.f == nil {
		return fmt.Errorf("stage bind mount source %s: source is closed", s.Path)
	}
	if _, _, err := fdPath(int(s.f.Fd())); err != nil {
		return fmt.Errorf("stage bind mount source %s: %w", s.Path, err)
	}
	tree, err := idmap.CloneMappedFile(s.f, userns, recursive)
	if err != nil {
		return fmt.Errorf("stage bind mount source %s: %w", s.Path, err)
	}
	defer tree.Close()
	if err := makeSlave(tree); err != nil {
		return fmt.Errorf("stage bind mount source %s: %w", s.Path, err)
	}
	if err := attach(tree, target, s.IsDir()); err != nil {
		return fmt.Errorf("stage bind mount source %s: %w", s.Path, err)
	}
	return nil
}

// attach moves the detached tree to target, which it creates (a directory
// if dir, else an empty file) with any missing parents, so that no staged
// mount reaches the peers of a shared parent mount. On error nothing is
// left mounted or created.
func attach(tree *os.File, target string, dir bool) (retErr error) {
	var u undo.Stack
	defer u.OnError(&retErr)
	target, err := filepath.Abs(target)
	if err != nil {
		return fmt.Errorf("staging target: %w", err)
	}
	parent, created, err := makeParents(filepath.Dir(target))
	if err != nil {
		return err
	}
	u.Add(func() { removeDirs(created) })
	target = filepath.Join(parent, filepath.Base(target))
	unshare, err := privateParent(parent)
	if err != nil {
		return err
	}
	if unshare != nil {
		u.Add(unshare)
	}

	if dir {
		err = unix.Mkdir(target, 0o700)
	} else {
		var fd int
		fd, err = unix.Open(target, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
		if err == nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		return fmt.Errorf("make staging target %s: %w", target, err)
	}
	u.Add(func() { os.Remove(target) })
	return idmap.Attach(tree, target)
}

// makeParents creates dir (0700: only root walks to a staged mount; the
// runtime lets the container's own root search its dir afterwards) and any
// missing parents, and returns its real path and the dirs it created,
// parents first.
func makeParents(dir string) (string, []string, error) {
	created, err := mkdirs(dir, 0o700)
	if err != nil {
		return "", nil, fmt.Errorf("make staging dir: %w", err)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		removeDirs(created)
		return "", nil, fmt.Errorf("staging dir: %w", err)
	}
	return real, created, nil
}

// privateParent makes sure that a mount attached in dir (a real path)
// propagates nowhere. If the mount that holds dir is shared, dir becomes a
// private bind mount of itself, and the returned func unmounts it again;
// if dir is itself the mount point of a shared mount, which is not ours to
// change, it fails.
func privateParent(dir string) (func(), error) {
	m, err := idmap.MountOf(dir)
	if err != nil {
		return nil, fmt.Errorf("staging dir %s: %w", dir, err)
	}
	if !isShared(m) {
		return nil, nil
	}
	if m.Mountpoint == dir {
		return nil, fmt.Errorf("staging dir %s is a shared mount point: stage in a directory below it", dir)
	}
	// Recursive, so that nothing already mounted below dir is hidden.
	if err := unix.Mount(dir, dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return nil, fmt.Errorf("bind staging dir %s: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		unix.Unmount(dir, unix.MNT_DETACH)
		return nil, fmt.Errorf("make staging dir %s private: %w", dir, err)
	}
	return func() { unix.Unmount(dir, unix.MNT_DETACH) }, nil
}

func isShared(m *mountinfo.Info) bool {
	for _, f := range strings.Fields(m.Optional) {
		if strings.HasPrefix(f, "shared:") {
			return true
		}
	}
	return false
}

// TeardownStaged unmounts everything at or under dir, deepest first, and
// removes dir with the staging targets in it. It is idempotent: a dir
// already gone is not an error. dir must be moat's own staging dir: a
// mount point at dir is unmounted too.
func TeardownStaged(dir string) error {
	dir, found, err := realPath(dir)
	if err != nil || !found {
		return err
	}
	// What moat staged sits at dir and at its entries, and detaching those
	// takes every mount below along without reading the host's mount
	// table, which grows with every running container. Anything else
	// stops removeStaging, and only then is the table read.
	if err := detachStaged(dir); err != nil {
		return fmt.Errorf("staging dir: %w", err)
	}
	err = removeStaging(dir)
	if errors.Is(err, errStillMounted) {
		if err := unmountAll(dir); err != nil {
			return fmt.Errorf("staging dir: %w", err)
		}
		err = removeStaging(dir)
	}
	if err != nil {
		return fmt.Errorf("remove staging dir: %w", err)
	}
	return nil
}

// DetachStaged takes the staged mounts in dir off the host once the
// container's init has bound them in, leaving dir for TeardownStaged.
// Idempotent.
func DetachStaged(dir string) error {
	dir, found, err := realPath(dir)
	if err != nil || !found {
		return err
	}
	return detachStaged(dir)
}

// detachStaged detaches the mounts at dir and at each of its entries.
func detachStaged(dir string) error {
	if err := detachAt(dir); err != nil {
		return err
	}
	names, err := readDirNames(dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := detachAt(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func readDirNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// errStillMounted is what removeStaging meets where a mount remains.
var errStillMounted = errors.New("is mounted again")

// removeStaging removes dir and what is in it, but never crosses into
// another mount: if something was mounted there again in the meantime, it
// stops with an error rather than delete a host file through it.
func removeStaging(dir string) error {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, dir, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return &os.PathError{Op: "statx", Path: dir, Err: err}
	}
	return removeOnMount(dir, st.Mnt_id)
}

func removeOnMount(p string, mnt uint64) error {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID|unix.STATX_TYPE, &st); err != nil {
		return &os.PathError{Op: "statx", Path: p, Err: err}
	}
	if st.Mnt_id != mnt {
		return fmt.Errorf("%s %w", p, errStillMounted)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		ents, err := os.ReadDir(p)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := removeOnMount(filepath.Join(p, e.Name()), mnt); err != nil {
				return err
			}
		}
	}
	return os.Remove(p)
}

// makeSlave makes a detached tree a slave of its source. A clone of a shared
// mount is a peer of it: unmounting under the clone would unmount under the
// source too. A slave receives from the source's peers and sends them
// nothing.
func makeSlave(tree *os.File) error {
	attr := unix.MountAttr{Propagation: unix.MS_SLAVE}
	if err := unix.MountSetattr(int(tree.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		return fmt.Errorf("make the clone a slave: %w", err)
	}
	return nil
}
