package runtime

import (
	"errors"
	"os/exec"
	"reflect"
	"strconv"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// otherNetns starts a process in a network namespace of its own and returns
// the path of that namespace; the process is stopped when the test ends.
func otherNetns(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/net"
}

func TestCheckHostNamespaces(t *testing.T) {
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
