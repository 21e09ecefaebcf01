// Package fstest holds what the kernel-facing tests of idmap and mounts share:
// a re-exec'd helper that acts as a process Inside a user namespace, one that
// runs a function on a fresh process's main thread (OnMain), and checks that
// no mount is left behind and that no thread is left changed.
package fstest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// The test binary doubles as a process "inside" a container: run with
// helperEnv set, it performs the file operations given as arguments and
// prints one result per operation as JSON.
const helperEnv = "MOAT_FSTEST_HELPER"

// mainEnv names the function of Main's mains that a binary re-executed by
// OnMain runs.
const mainEnv = "MOAT_FSTEST_MAIN"

// Main is a package's TestMain: it runs a helper when the binary was
// re-executed as one, and the tests otherwise. mains are the functions
// OnMain can run, by name; each gets OnMain's arguments.
func Main(m *testing.M, mains map[string]func(args []string) error) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain(os.Args[1:]))
	}
	if name := os.Getenv(mainEnv); name != "" {
		fn, ok := mains[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "no main function %q\n", name)
			os.Exit(2)
		}
		os.Exit(onMainHelper(fn, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// helperMain runs "op path" pairs: stat, ls, mkfile, mkdir, write, rm.
func helperMain(args []string) int {
	var out []string
	for i := 0; i+1 < len(args); i += 2 {
		out = append(out, helperOp(args[i], args[i+1]))
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		return 1
	}
	return 0
}

func helperOp(op, path string) string {
	var err error
	switch op {
	case "stat":
		return StatString(path)
	case "ls":
		var ents []os.DirEntry
		if ents, err = os.ReadDir(path); err == nil {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			return strings.Join(names, ",")
		}
	case "mkfile":
		err = os.WriteFile(path, []byte("x"), 0o644)
	case "mkdir":
		err = os.Mkdir(path, 0o755)
	case "write":
		var f *os.File
		if f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0); err == nil {
			_, err = f.WriteString("more")
			f.Close()
		}
	case "rm":
		err = os.Remove(path)
	default:
		err = fmt.Errorf("unknown op %q", op)
	}
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "error: " + err.Error()
	}
	return "ok"
}

// StatString describes path as "uid:gid type", "uid:gid char maj:min" for
// devices, or "error: ..." when it cannot be stat'ed.
func StatString(path string) string {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return "error: " + err.Error()
	}
	s := fmt.Sprintf("%d:%d ", st.Uid, st.Gid)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return s + "dir"
	case unix.S_IFREG:
		return s + "file"
	case unix.S_IFCHR:
		return s + fmt.Sprintf("char %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	return s + "other"
}

// RequiresRoot skips the test unless it runs as root: it mounts, makes
// namespaces or device nodes, or chowns, and would fail for want of
// privilege rather than of a bug.
func RequiresRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root (mounts, namespaces, device nodes or chown); running as euid %d", os.Geteuid())
	}
}

// Inside runs ops as container uid/gid in a new user namespace with the
// given mapping, like a container process, and returns one result per op.
func Inside(t *testing.T, uids, gids []syscall.SysProcIDMap, uid, gid uint32, ops ...string) []string {
	t.Helper()
	cmd := exec.Command("/proc/self/exe", ops...)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: uids,
		GidMappings: gids,
		Credential:  &syscall.Credential{Uid: uid, Gid: gid, NoSetGroups: true},
		Pdeathsig:   syscall.SIGKILL,
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("Inside helper %v: %v", ops, err)
	}
	var res []string
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("Inside helper output %q: %v", out, err)
	}
	return res
}

// NoMountsUnder fails the test if anything is still mounted under dir when
// the test ends. Register it before the cleanups that unmount.
func NoMountsUnder(t *testing.T, dir string) {
	t.Helper()
	t.Cleanup(func() {
		if left := MountsUnder(t, dir); len(left) > 0 {
			t.Errorf("mounts left under %s: %v", dir, left)
		}
	})
}

// Mounts lists the mounts at or below dir as /proc/self/mountinfo shows
// them, in its order: a mount stacked on another comes after it. Tests read
// mountinfo only through it, so that the kernel's escaping is undone in one
// place.
func Mounts(dir string) ([]*mountinfo.Info, error) {
	return mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
}

// MountsUnder lists the mount points at or below dir, sorted.
func MountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	ms, err := Mounts(dir)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, m := range ms {
		left = append(left, m.Mountpoint)
	}
	sort.Strings(left)
	return left
}

// UnmountAtEnd detaches whatever is mounted at path when the test ends.
func UnmountAtEnd(t *testing.T, path string) {
	t.Cleanup(func() {
		for unix.Unmount(path, unix.MNT_DETACH) == nil {
		}
	})
}

// TestDir is a fresh directory whose mounts are checked at the end.
func TestDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Container processes must be able to walk to it.
	for _, p := range []string{d, filepath.Dir(d)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	NoMountsUnder(t, d)
	return d
}

// Node is a file or directory for MakeTree.
type Node struct {
	Path     string
	Dir      bool
	UID, GID int
	Opaque   bool // trusted.overlay.opaque=y
	Whiteout bool // char device 0/0
}

// MakeTree creates nodes under root with the given owners.
func MakeTree(t *testing.T, root string, nodes ...Node) {
	t.Helper()
	for _, n := range nodes {
		p := filepath.Join(root, n.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case n.Whiteout:
			err = unix.Mknod(p, unix.S_IFCHR|0o000, int(unix.Mkdev(0, 0)))
		case n.Dir:
			err = os.Mkdir(p, 0o755)
		default:
			err = os.WriteFile(p, []byte(n.Path), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		if n.Opaque {
			if err := unix.Setxattr(p, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Lchown(p, n.UID, n.GID); err != nil {
			t.Fatal(err)
		}
	}
}

// Step is one operation a container process performs, as uid (gid alike),
// on a path relative to the root under test, and the result it must give.
type Step struct {
	UID      uint32
	Op, Path string
	Want     string
}

// RunSteps performs steps inside a user namespace with the given mapping,
// one helper process each, and reports every result that differs.
func RunSteps(t *testing.T, uids, gids []syscall.SysProcIDMap, root string, steps []Step) {
	t.Helper()
	for _, s := range steps {
		got := Inside(t, uids, gids, s.UID, s.UID, s.Op, filepath.Join(root, s.Path))
		if got[0] != s.Want {
			t.Errorf("uid %d: %s %s = %q, want %q", s.UID, s.Op, s.Path, got[0], s.Want)
		}
	}
}

// CheckOnDisk compares StatString of each path under dir with its want.
func CheckOnDisk(t *testing.T, dir string, want map[string]string) {
	t.Helper()
	for p, w := range want {
		if got := StatString(filepath.Join(dir, p)); got != w {
			t.Errorf("%s on disk is %q, want %q", filepath.Join(dir, p), got, w)
		}
	}
}

// NamespacedProcess starts `sleep` in new namespaces (clone flags, e.g.
// CLONE_NEWNET), stopped when the test ends, and returns its pid.
func NamespacedProcess(t *testing.T, attr *syscall.SysProcAttr) int {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd.Process.Pid
}

// ThreadStates describes every thread of this process by what a library
// call may change on a thread and must change back: its namespaces and
// credentials. "self" is the thread-group leader as /proc/self shows it;
// the others are keyed by thread id. Threads that end while being read are
// left out.
func ThreadStates() (map[string]string, error) {
	states := map[string]string{}
	self, err := threadState("/proc/self")
	if err != nil {
		return nil, err
	}
	states["self"] = self
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	for _, task := range tasks {
		s, err := threadState("/proc/self/task/" + task.Name())
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			continue
		}
		if err != nil {
			return nil, err
		}
		states[task.Name()] = s
	}
	return states, nil
}

func threadState(dir string) (string, error) {
	var b strings.Builder
	for _, ns := range []string{"net", "mnt", "user", "uts", "ipc", "pid", "cgroup", "time"} {
		l, err := os.Readlink(filepath.Join(dir, "ns", ns))
		if err != nil {
			return "", err
		}
		b.WriteString(l + " ")
	}
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(status), "\n") {
		switch k, _, _ := strings.Cut(l, ":"); k {
		case "Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs":
			b.WriteString(strings.Join(strings.Fields(l), " ") + "; ")
		}
	}
	return b.String(), nil
}

// CheckThreads fails the test if a thread of this process (or the process
// as /proc/self shows it) differs from before, a ThreadStates taken
// earlier: in its namespaces or credentials.
func CheckThreads(t *testing.T, before map[string]string) {
	t.Helper()
	after, err := ThreadStates()
	if err != nil {
		t.Fatal(err)
	}
	checkThreads(t, before, after)
}

func checkThreads(t *testing.T, before, after map[string]string) {
	t.Helper()
	want := before["self"]
	for _, s := range before {
		if s != want {
			t.Fatalf("threads differed already before (changed by an earlier test?): %v", before)
		}
	}
	for task, s := range after {
		if s != want {
			t.Errorf("thread %s changed:\n  was %s\n  now %s", task, want, s)
		}
	}
}

// OnMain re-executes the test binary to run the function named name (one
// of the mains given to Main) with args on the main goroutine, first thing:
// the goroutines it starts and waits for then run on the process's main
// thread, as in a command-line program such as moat, where Go never ends a
// thread left locked. It fails the test if fn fails or leaves any thread,
// the main thread included, changed.
func OnMain(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Env = append(os.Environ(), mainEnv+"="+name)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s on the main thread: %v", name, err)
	}
	var res onMainResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%s on the main thread: output %q: %v", name, out, err)
	}
	if res.Err != "" {
		t.Fatalf("%s on the main thread: %s", name, res.Err)
	}
	checkThreads(t, res.Before, res.After)
}

type onMainResult struct {
	Before, After map[string]string
	Err           string
}

func onMainHelper(fn func([]string) error, args []string) int {
	var res onMainResult
	var err error
	if res.Before, err = ThreadStates(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := fn(args); err != nil {
		res.Err = err.Error()
	}
	if res.After, err = ThreadStates(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}
