package runtime

import (
	"fmt"
	"os"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/idmap"
)

// isolatedNamespaces are the namespaces a container may never share with the
// host: with them, its root could reach host processes, network, IPC,
// hostname or mounts despite the user namespace. The names are docker's words.
var isolatedNamespaces = []struct {
	typ  specs.LinuxNamespaceType
	proc string // name under /proc/<pid>/ns
	word string
}{
	{specs.PIDNamespace, "pid", "pid"},
	{specs.NetworkNamespace, "net", "network"},
	{specs.IPCNamespace, "ipc", "ipc"},
	{specs.UTSNamespace, "uts", "uts"},
	{specs.MountNamespace, "mnt", "mount"},
}

// HostNamespaceError names every namespace a spec would share with the host.
type HostNamespaceError struct{ Shared []string }

func (e *HostNamespaceError) Error() string {
	return fmt.Sprintf("moat containers can't share namespaces [%s] with the host (because they use the linux user-namespace for isolation)",
		strings.Join(e.Shared, " "))
}

// checkHostNamespaces rejects a spec that omits one of the isolated
// namespaces or names a path that is the host's own. Paths are compared by
// the namespace's identity (device and inode), not by text: a bind-mounted
// copy of the host's netns is still the host's.
func checkHostNamespaces(spec *specs.Spec) error {
	var shared []string
	for _, ns := range isolatedNamespaces {
		want, found := namespacePath(spec, ns.typ)
		if !found {
			shared = append(shared, ns.word)
			continue
		}
		if want == "" {
			continue
		}
		same, err := sameNamespace(want, ns.proc)
		if err != nil {
			return fmt.Errorf("%s namespace %s: %w", ns.word, want, err)
		}
		if same {
			shared = append(shared, ns.word)
		}
	}
	if len(shared) > 0 {
		return &HostNamespaceError{Shared: shared}
	}
	return nil
}

// nsTypes are the CLONE_NEW* flags of the spec's namespace types.
var nsTypes = map[specs.LinuxNamespaceType]int{
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.UserNamespace:    unix.CLONE_NEWUSER,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
	specs.TimeNamespace:    unix.CLONE_NEWTIME,
}

// checkNamespacePaths makes sure every namespace path names a namespace of
// its type, as the runtime spec requires, before anything else looks at
// it: moat replaces the user, cgroup and time namespaces, and would
// otherwise accept any file there without a word.
func checkNamespacePaths(spec *specs.Spec) error {
	for _, ns := range spec.Linux.Namespaces {
		want, known := nsTypes[ns.Type]
		if !known {
			return fmt.Errorf("unknown namespace type %q", ns.Type)
		}
		if ns.Path == "" {
			continue
		}
		got, err := idmap.NamespaceType(ns.Path)
		if err != nil {
			return fmt.Errorf("%s namespace path: %w", ns.Type, err)
		}
		if got != want {
			return fmt.Errorf("%s namespace path %s is a %s namespace", ns.Type, ns.Path, nsTypeName(got))
		}
	}
	return nil
}

func nsTypeName(flag int) string {
	for t, f := range nsTypes {
		if f == flag {
			return string(t)
		}
	}
	return fmt.Sprintf("0x%x", flag)
}

func namespacePath(spec *specs.Spec, t specs.LinuxNamespaceType) (string, bool) {
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == t {
			return ns.Path, true
		}
	}
	return "", false
}

// hostNamespace is the path of the host's namespace of a kind: init's, or,
// where init's cannot be read (a sandboxed PID 1), moat's own, since dockerd
// and containerd's shim run moat in the host's namespaces.
func hostNamespace(kind string) string {
	p := "/proc/1/ns/" + kind
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return "/proc/self/ns/" + kind
}

func sameNamespace(path, kind string) (bool, error) {
	want, err := idmap.NamespaceID(path)
	if err != nil {
		return false, err
	}
	host, err := idmap.NamespaceID(hostNamespace(kind))
	if err != nil {
		return false, fmt.Errorf("read host namespace: %w", err)
	}
	return want == host, nil
}
