package idmap

import (
	"bufio"
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

	"golang.org/x/sys/unix"
)

// The test binary doubles as a process "inside" a container: run with
// helperEnv set, it performs the file operations given as arguments and
// prints one result per operation as JSON.
const helperEnv = "IDMAP_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain(os.Args[1:]))
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
		return statString(path)
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

// statString describes path as "uid:gid type", "uid:gid char maj:min" for
// devices, or "error: ..." when it cannot be stat'ed.
func statString(path string) string {
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

// inside runs ops as container uid/gid in a new user namespace with the
// given mapping, like a container process, and returns one result per op.
func inside(t *testing.T, uids, gids []Mapping, uid, gid uint32, ops ...string) []string {
	t.Helper()
	toSys := func(ms []Mapping) []syscall.SysProcIDMap {
		var out []syscall.SysProcIDMap
		for _, m := range ms {
			out = append(out, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
		}
		return out
	}
	cmd := exec.Command("/proc/self/exe", ops...)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: toSys(uids),
		GidMappings: toSys(gids),
		Credential:  &syscall.Credential{Uid: uid, Gid: gid, NoSetGroups: true},
		Pdeathsig:   syscall.SIGKILL,
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("inside helper %v: %v", ops, err)
	}
	var res []string
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("inside helper output %q: %v", out, err)
	}
	return res
}

// noMountsUnder fails the test if anything is still mounted under dir when
// the test ends. Register it before the cleanups that unmount.
func noMountsUnder(t *testing.T, dir string) {
	t.Helper()
	t.Cleanup(func() {
		if left := mountsUnder(t, dir); len(left) > 0 {
			t.Errorf("mounts left under %s: %v", dir, left)
		}
	})
}

func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var left []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		mp := unescapeOctal(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			left = append(left, mp)
		}
	}
	sort.Strings(left)
	return left
}

// unmountAtEnd detaches whatever is mounted at path when the test ends.
func unmountAtEnd(t *testing.T, path string) {
	t.Cleanup(func() {
		for unix.Unmount(path, unix.MNT_DETACH) == nil {
		}
	})
}

// testDir is a fresh directory whose mounts are checked at the end.
func testDir(t *testing.T) string {
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
	noMountsUnder(t, d)
	return d
}

type node struct {
	path     string
	dir      bool
	uid, gid int
	opaque   bool // trusted.overlay.opaque=y
	whiteout bool // char device 0/0
}

// makeTree creates nodes under root with the given owners.
func makeTree(t *testing.T, root string, nodes ...node) {
	t.Helper()
	for _, n := range nodes {
		p := filepath.Join(root, n.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case n.whiteout:
			err = unix.Mknod(p, unix.S_IFCHR|0o000, int(unix.Mkdev(0, 0)))
		case n.dir:
			err = os.Mkdir(p, 0o755)
		default:
			err = os.WriteFile(p, []byte(n.path), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		if n.opaque {
			if err := unix.Setxattr(p, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Lchown(p, n.uid, n.gid); err != nil {
			t.Fatal(err)
		}
	}
}
