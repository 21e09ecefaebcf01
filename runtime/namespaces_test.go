package runtime

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/internal/fstest"
)

// otherNetns starts a process in a network namespace of its own and returns
// the path of that namespace; the process is stopped when the test ends.
func otherNetns(t *testing.T) string {
	t.Helper()
	pid := fstest.NamespacedProcess(t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET})
	return "/proc/" + strconv.Itoa(pid) + "/ns/net"
}

// pinnedNS bind-mounts the namespace at path onto a file, as ip netns and
// CNI plugins pin a network namespace, and returns the file.
func pinnedNS(t *testing.T, path string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ns")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(path, f, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(f, unix.MNT_DETACH) })
	return f
}

// isolated completes nss with private namespaces of the isolated types
// it does not name, so that a test can look at one check alone.
func isolated(nss ...specs.LinuxNamespace) *specs.Spec {
	spec := &specs.Spec{Linux: &specs.Linux{Namespaces: nss}}
	for _, typ := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace} {
		if !slices.ContainsFunc(nss, func(ns specs.LinuxNamespace) bool { return ns.Type == typ }) {
			spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: typ})
		}
	}
	return spec
}

// What the kernel says of namespace paths reaches the policy as it is.
func TestInspectNamespace(t *testing.T) {
	fstest.RequiresRoot(t)
	proc := fstest.NamespacedProcess(t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC})
	procNet := "/proc/" + strconv.Itoa(proc) + "/ns/net"
	pinned := pinnedNS(t, procNet)
	user := containerNS(t, 900000)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	hostUser, err := hostNamespaceID(specs.UserNamespace)
	if err != nil {
		t.Fatal(err)
	}
	hostNet, err := hostNamespaceID(specs.NetworkNamespace)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path   string
		kind   specs.LinuxNamespaceType
		owner  bool // owned by the host's user namespace
		pinned bool
		err    string
	}{
		{path: "/proc/self/ns/net", kind: specs.NetworkNamespace, owner: true},
		{path: procNet, kind: specs.NetworkNamespace, owner: true},
		{path: pinned, kind: specs.NetworkNamespace, owner: true, pinned: true},
		{path: "/proc/" + strconv.Itoa(proc) + "/ns/ipc", kind: specs.IPCNamespace, owner: true},
		{path: "/proc/" + strconv.Itoa(user) + "/ns/net", kind: specs.NetworkNamespace},
		{path: "/proc/" + strconv.Itoa(user) + "/ns/user", kind: specs.UserNamespace},
		{path: file, err: file + " is not a namespace"},
		{path: file + "-nope", err: "no such file"},
	} {
		t.Run(tt.path, func(t *testing.T) {
			f, err := inspectNamespace(tt.path)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("facts %+v, error %v; want an error containing %q", f, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Kind != tt.kind || f.Pinned != tt.pinned || (f.Owner == hostUser) != tt.owner {
				t.Fatalf("facts %+v: want kind %s, pinned %t, owned by the host %t", f, tt.kind, tt.pinned, tt.owner)
			}
			if (f.ID == hostNet) != (tt.path == "/proc/self/ns/net") {
				t.Fatalf("identity %+v, the host's network namespace is %+v", f.ID, hostNet)
			}
		})
	}
}

// containerNS starts a process in a user and network namespace of its own,
// mapped from hostID, like a moat container's init, and returns its pid.
func containerNS(t *testing.T, hostID int) int {
	t.Helper()
	return fstest.NamespacedProcess(t, &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: hostID, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: hostID, Size: 65536}},
	})
}

func TestJudgeNamespaces(t *testing.T) {
	fstest.RequiresRoot(t)
	a, b := containerNS(t, 900000), containerNS(t, 965536)
	hostOwned := fstest.NamespacedProcess(t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC})
	ns := func(pid int, kind string) string { return "/proc/" + strconv.Itoa(pid) + "/ns/" + kind }
	podNet := pinnedNS(t, ns(hostOwned, "net"))
	odd := fstest.NamespacedProcess(t, &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 800000, Size: 1}, {ContainerID: 1, HostID: 800001, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 800000, Size: 2}},
	})
	hostIPC := pinnedNS(t, ns(hostOwned, "ipc"))
	tests := []struct {
		name    string
		nss     []specs.LinuxNamespace
		wantUID uint32 // 0: no join
		err     string // a part of the error; "": none
	}{
		{"all private", []specs.LinuxNamespace{{Type: specs.NetworkNamespace}}, 0, ""},
		{"host-owned netns", []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: podNet}}, 0, ""},
		{"pod: host-owned netns, sandbox's ipc", []specs.LinuxNamespace{
			{Type: specs.NetworkNamespace, Path: podNet}, {Type: specs.IPCNamespace, Path: ns(a, "ipc")}}, 900000, ""},
		{"container netns", []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: ns(a, "net")}}, 900000, ""},
		{"net and ipc of one", []specs.LinuxNamespace{
			{Type: specs.NetworkNamespace, Path: ns(a, "net")}, {Type: specs.IPCNamespace, Path: ns(a, "ipc")}}, 900000, ""},
		{"two containers", []specs.LinuxNamespace{
			{Type: specs.NetworkNamespace, Path: ns(a, "net")}, {Type: specs.IPCNamespace, Path: ns(b, "ipc")}}, 0, "belong to two different containers"},
		{"caller's userns path is ignored", []specs.LinuxNamespace{{Type: specs.UserNamespace, Path: ns(b, "user")}}, 0, ""},
		{"missing path", []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/proc/self/ns/nope"}}, 0, "no such file"},
		{"a non-moat container's netns (a process's, the host's user namespace owns it)", []specs.LinuxNamespace{
			{Type: specs.NetworkNamespace, Path: ns(hostOwned, "net")}}, 0, "not in a moat container"},
		{"an ipc namespace the host's user namespace owns, pinned", []specs.LinuxNamespace{{Type: specs.IPCNamespace, Path: hostIPC}}, 0, "the host's user namespace owns it"},
		{"the host's netns", []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/proc/self/ns/net"}}, 0, "can't share namespaces [network] with the host"},
		{"a user namespace path that is a netns", []specs.LinuxNamespace{{Type: specs.UserNamespace, Path: ns(a, "net")}}, 0, "is a network namespace"},
		{"a user namespace moat did not make", []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: ns(odd, "net")}}, 0, "a user namespace that moat did not make"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, hostNet, err := judgeNamespaces(isolated(tt.nss...))
			wantNet := ""
			if slices.Contains(tt.nss, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: podNet}) {
				wantNet = podNet
			}
			if err == nil && hostNet != wantNet {
				t.Errorf("host-owned network namespace %q, want %q", hostNet, wantNet)
			}
			switch {
			case tt.err != "":
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %+v, error %v; want an error containing %q", got, err, tt.err)
				}
			case err != nil:
				t.Fatal(err)
			case tt.wantUID == 0 && got != nil:
				t.Fatalf("joins %+v, want a user namespace of its own", got)
			case tt.wantUID != 0 && (got == nil || got.uid != tt.wantUID):
				t.Fatalf("got %+v, want the range from %d", got, tt.wantUID)
			case got != nil && got.userns != ns(a, "user"):
				t.Fatalf("userns path %s, want %s", got.userns, ns(a, "user"))
			}
		})
	}
}
