package helper

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/moby/sys/mountinfo"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/procfs"
)

// ViewsDir is where the helper mounts the /proc and /sys views that
// containers bind: a directory every user may pass, since a container's
// init opens the files as the container's root.
const ViewsDir = "/run/moat-views"

// viewsFSType is the views' filesystem type, as mountinfo shows it.
const viewsFSType = "fuse.moat-views"

// views is the helper's side of the views: the session serving them.
type views struct {
	mu   sync.Mutex
	sess *procfs.Session
}

// ensureViews mounts and serves the views unless they are served, and
// gives the keeper their connection.
func (s *server) ensureViews() error {
	s.views.mu.Lock()
	defer s.views.mu.Unlock()
	s.touch()
	if s.views.sess != nil {
		return nil
	}
	if err := os.MkdirAll(ViewsDir, 0o755); err != nil {
		return fmt.Errorf("views dir: %w", err)
	}
	// A mount left by a helper and keeper killed together has nobody to
	// serve it: containers still bound to it are lost, new ones get new.
	if m, _ := mountinfo.Mounted(ViewsDir); m {
		if err := unix.Unmount(ViewsDir, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount the views nobody serves: %w", err)
		}
	}
	sess, err := s.serveViewsWith(func(v *procfs.Views) (*procfs.Session, error) { return v.Mount(ViewsDir) })
	if err != nil {
		return err
	}
	logrus.Infof("helper: serving the /proc and /sys views on %s", ViewsDir)
	if err := s.link.send(keepMsg{Op: "fuse"}, int(sess.Device().Fd())); err != nil {
		// Served, but not safe from a kill of the helper until the next
		// keeper takes it (relink gives it what it lacks).
		logrus.Warnf("helper: give the keeper the views: %v", err)
	}
	return nil
}

// resumeViews serves the views on fd, the connection a dead helper
// served, which the keeper gave back.
func (s *server) resumeViews(fd int) {
	s.views.mu.Lock()
	defer s.views.mu.Unlock()
	if s.views.sess != nil {
		closeFD(fd)
		return
	}
	dev := os.NewFile(uintptr(fd), "/dev/fuse")
	if _, err := s.serveViewsWith(func(v *procfs.Views) (*procfs.Session, error) { return v.Resume(dev) }); err != nil {
		logrus.Errorf("helper: %v", err)
		dev.Close()
		return
	}
	logrus.Infof("helper: serving the /proc and /sys views again")
}

// serveViewsWith starts a session made by start and serves it. s.views.mu
// is held.
func (s *server) serveViewsWith(start func(*procfs.Views) (*procfs.Session, error)) (*procfs.Session, error) {
	v, err := procfs.NewViews(procfs.Host{})
	if err != nil {
		return nil, err
	}
	sess, err := start(v)
	if err != nil {
		return nil, err
	}
	s.views.sess = sess
	go s.serveViews(sess)
	return sess, nil
}

// viewsFD is the views' connection, or -1 when they are not served.
func (s *server) viewsFD() int {
	s.views.mu.Lock()
	defer s.views.mu.Unlock()
	if s.views.sess == nil {
		return -1
	}
	return int(s.views.sess.Device().Fd())
}

func (s *server) serveViews(sess *procfs.Session) {
	if err := sess.Serve(); err != nil {
		logrus.Errorf("helper: %v", err)
	}
	s.views.mu.Lock()
	defer s.views.mu.Unlock()
	if s.views.sess == sess {
		s.views.sess = nil
	}
}

// stopViews unmounts the views, which no container uses any more.
func (s *server) stopViews() {
	s.views.mu.Lock()
	sess := s.views.sess
	s.views.mu.Unlock()
	if sess == nil {
		return
	}
	if err := unix.Unmount(ViewsDir, unix.MNT_DETACH); err != nil {
		logrus.Warnf("helper: unmount the views: %v", err)
		return
	}
	_ = os.Remove(ViewsDir)
}

// viewsInUse reports whether a container binds the views: a mount of
// theirs in another mount namespace than the helper's, or more than the
// one in the helper's. A process gone meanwhile is skipped.
func viewsInUse() bool {
	own, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return true // cannot tell: keep serving
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	seen := map[string]bool{}
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		ns, err := os.Readlink(filepath.Join("/proc", p.Name(), "ns/mnt"))
		if err != nil || seen[ns] {
			continue
		}
		seen[ns] = true
		b, err := os.ReadFile(filepath.Join("/proc", p.Name(), "mountinfo"))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
				continue
			}
			return true
		}
		n := bytes.Count(b, []byte(" - "+viewsFSType+" "))
		if n > 1 || n == 1 && ns != own {
			return true
		}
	}
	return false
}
