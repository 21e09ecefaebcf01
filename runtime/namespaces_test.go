package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
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

func TestCheckNamespacePaths(t *testing.T) {
	fstest.RequiresRoot(t)
	proc := fstest.NamespacedProcess(t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC})
	netns := pinnedNS(t, "/proc/"+strconv.Itoa(proc)+"/ns/net")
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ns   specs.LinuxNamespace
		err  string
	}{
		{"no path", specs.LinuxNamespace{Type: specs.UserNamespace}, ""},
		{"network path", specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: netns}, ""},
		{"process link", specs.LinuxNamespace{Type: specs.IPCNamespace, Path: "/proc/" + strconv.Itoa(proc) + "/ns/ipc"}, ""},
		{"user path that is a network namespace", specs.LinuxNamespace{Type: specs.UserNamespace, Path: netns}, "user namespace path " + netns + " is a network namespace"},
		{"cgroup path that is an ipc namespace", specs.LinuxNamespace{Type: specs.CgroupNamespace, Path: "/proc/" + strconv.Itoa(proc) + "/ns/ipc"}, "is a ipc namespace"},
		{"time path that is a plain file", specs.LinuxNamespace{Type: specs.TimeNamespace, Path: file}, "time namespace path: " + file + " is not a namespace"},
		{"missing path", specs.LinuxNamespace{Type: specs.UserNamespace, Path: file + "-nope"}, "no such file"},
		{"unknown type", specs.LinuxNamespace{Type: "bogus"}, `unknown namespace type "bogus"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkNamespacePaths(&specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{tt.ns}}})
			switch {
			case tt.err == "" && err != nil:
				t.Fatal(err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("error %v, want one containing %q", err, tt.err)
			}
		})
	}
}

func TestCheckHostNamespaces(t *testing.T) {
	fstest.RequiresRoot(t)
	private := func(except ...specs.LinuxNamespaceType) []specs.LinuxNamespace {
		var nss []specs.LinuxNamespace
	next:
		for _, typ := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace} {
			for _, e := range except {
				if typ == e {
					continue next
				}
			}
			nss = append(nss, specs.LinuxNamespace{Type: typ})
		}
		return nss
	}
	withPath := func(nss []specs.LinuxNamespace, typ specs.LinuxNamespaceType, path string) []specs.LinuxNamespace {
		return append(nss, specs.LinuxNamespace{Type: typ, Path: path})
	}
	tests := []struct {
		name   string
		nss    []specs.LinuxNamespace
		shared []string
	}{
		{"all private", private(), nil},
		{"pid omitted", private(specs.PIDNamespace), []string{"pid"}},
		{"all omitted", private(specs.PIDNamespace, specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace), []string{"pid", "network", "ipc", "uts"}},
		{"host net by path", withPath(private(specs.NetworkNamespace), specs.NetworkNamespace, hostNamespace("net")), []string{"network"}},
		{"host net via self", withPath(private(specs.NetworkNamespace), specs.NetworkNamespace, "/proc/self/ns/net"), []string{"network"}},
		{"another net", withPath(private(specs.NetworkNamespace), specs.NetworkNamespace, otherNetns(t)), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkHostNamespaces(&specs.Spec{Linux: &specs.Linux{Namespaces: tt.nss}})
			var hn *HostNamespaceError
			switch {
			case tt.shared == nil && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.shared != nil && !errors.As(err, &hn):
				t.Fatalf("error %v, want a HostNamespaceError", err)
			case tt.shared != nil && !reflect.DeepEqual(hn.Shared, tt.shared):
				t.Fatalf("shared %v, want %v", hn.Shared, tt.shared)
			}
		})
	}
}

func TestHostNamespaceMessage(t *testing.T) {
	err := &HostNamespaceError{Shared: []string{"pid", "network"}}
	want := "moat containers can't share namespaces [pid network] with the host (because they use the linux user-namespace for isolation)"
	if err.Error() != want {
		t.Fatalf("got %q\nwant %q", err.Error(), want)
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

func TestJoinedUserns(t *testing.T) {
	fstest.RequiresRoot(t)
	a, b := containerNS(t, 900000), containerNS(t, 965536)
	hostOwned := fstest.NamespacedProcess(t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC})
	ns := func(pid int, kind string) string { return "/proc/" + strconv.Itoa(pid) + "/ns/" + kind }
	podNet := pinnedNS(t, ns(hostOwned, "net"))
	hostIPC := pinnedNS(t, ns(hostOwned, "ipc"))
	tests := []struct {
		name    string
		nss     []specs.LinuxNamespace
		wantUID uint32 // 0: no join
		wantErr bool
	}{
		{"all private", []specs.LinuxNamespace{{Type: specs.NetworkNamespace}}, 0, false},
		{"host-owned netns", []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: podNet}}, 0, false},
		{"pod: host-owned netns, sandbox's ipc", []specs.LinuxNamespace{
			{Type: specs.NetworkNamespace, Path: podNet}, {Type: specs.IPCNamespace, Path: ns(a, "ipc")}}, 900000, false},
		{"container netns", []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: ns(a, "net")}}, 900000, false},
		{"net and ipc of one", []specs.LinuxNamespace{
			{Type: specs.NetworkNamespace, Path: ns(a, "net")}, {Type: specs.IPCNamespace, Path: ns(a, "ipc")}}, 900000, false},
		{"two containers", []specs.LinuxNamespace{
			{Type: specs.NetworkNamespace, Path: ns(a, "net")}, {Type: specs.IPCNamespace, Path: ns(b, "ipc")}}, 0, true},
		{"caller's userns path is ignored", []specs.LinuxNamespace{{Type: specs.UserNamespace, Path: ns(b, "user")}}, 0, false},
		{"missing path", []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/proc/self/ns/nope"}}, 0, true},
		{"a non-moat container's netns (a process's, the host's user namespace owns it)", []specs.LinuxNamespace{
			{Type: specs.NetworkNamespace, Path: ns(hostOwned, "net")}}, 0, true},
		{"an ipc namespace the host's user namespace owns, pinned", []specs.LinuxNamespace{{Type: specs.IPCNamespace, Path: hostIPC}}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, hostNet, err := joinedUserns(&specs.Spec{Linux: &specs.Linux{Namespaces: tt.nss}})
			wantNet := ""
			if p, _ := namespacePath(&specs.Spec{Linux: &specs.Linux{Namespaces: tt.nss}}, specs.NetworkNamespace); p == podNet {
				wantNet = podNet
			}
			if err == nil && hostNet != wantNet {
				t.Errorf("host-owned network namespace %q, want %q", hostNet, wantNet)
			}
			switch {
			case tt.wantErr:
				if err == nil {
					t.Fatalf("no error, got %+v", got)
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
