package policy

import (
	"errors"
	"fmt"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The namespace policy decides which namespaces a container may name in its
// spec: none of the host's own, only namespaces of the type named, and, of
// the namespaces it joins, only those of one other moat container or a
// network namespace made for it (a pod's, podman's). What the kernel says
// of each path is gathered by the caller, once per path.

// NamespaceID identifies a namespace: the device and inode of its nsfs
// file.
type NamespaceID struct{ Dev, Ino uint64 }

// NamespaceFacts is what the kernel says of a namespace path.
type NamespaceFacts struct {
	// Kind is the type of namespace the path really is.
	Kind specs.LinuxNamespaceType
	ID   NamespaceID
	// Owner is the user namespace that owns it (unset for a user
	// namespace).
	Owner NamespaceID
	// Pinned is true for a file that holds the namespace by itself (a
	// bind mount of an nsfs file, as ip netns and CNI make), false for a
	// /proc/<pid>/ns link, which names a process's.
	Pinned bool
}

// NamespaceRules is how CheckNamespaces learns about the host.
type NamespaceRules struct {
	// Inspect returns the facts of a namespace path; its error is
	// reported as the path's.
	Inspect func(path string) (NamespaceFacts, error)
	// Host returns the identity of the host's namespace of a type.
	Host func(specs.LinuxNamespaceType) (NamespaceID, error)
}

// Namespaces is the verdict on a spec's namespaces.
type Namespaces struct {
	// Join, when set, is the first namespace path that another moat
	// container's user namespace owns: the container must join that user
	// namespace (JoinOwner), found through this path.
	Join      string
	JoinOwner NamespaceID
	// HostNet is the path of a network namespace the host's user
	// namespace owns that the container joins (a pod's, made by the CNI
	// plugin), or "".
	HostNet string
}

// isolatedNamespaces are the namespaces a container may never share with the
// host: with them, its root could reach host processes, network, IPC,
// hostname or mounts despite the user namespace. The words are docker's.
var isolatedNamespaces = []struct {
	typ  specs.LinuxNamespaceType
	word string
}{
	{specs.PIDNamespace, "pid"},
	{specs.NetworkNamespace, "network"},
	{specs.IPCNamespace, "ipc"},
	{specs.UTSNamespace, "uts"},
	{specs.MountNamespace, "mount"},
}

// knownNamespaces are the namespace types of the runtime spec.
var knownNamespaces = []specs.LinuxNamespaceType{
	specs.PIDNamespace, specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace,
	specs.MountNamespace, specs.UserNamespace, specs.CgroupNamespace, specs.TimeNamespace,
}

// HostNamespaceError names every namespace a spec would share with the host.
type HostNamespaceError struct{ Shared []string }

func (e *HostNamespaceError) Error() string {
	return fmt.Sprintf("moat containers can't share namespaces [%s] with the host (because they use the linux user-namespace for isolation)",
		strings.Join(e.Shared, " "))
}

// JoinOnlyMoat ends the messages of joins that moat refuses.
const JoinOnlyMoat = "moat containers can only join the namespaces of other moat containers"

// CheckNamespaces judges the spec's namespaces, in this order: every path
// must be a namespace of its type (moat replaces the user, cgroup and time
// namespaces, and would otherwise accept any file there without a word);
// no isolated namespace may be missing or the host's own (compared by
// identity: a bind-mounted copy of the host's netns is still the host's);
// the namespaces joined must belong to one moat container, or be a
// network namespace made for the container.
func CheckNamespaces(spec *specs.Spec, r NamespaceRules) (Namespaces, error) {
	facts := map[string]NamespaceFacts{}
	for _, ns := range spec.Linux.Namespaces {
		if !knownNamespace(ns.Type) {
			return Namespaces{}, fmt.Errorf("unknown namespace type %q", ns.Type)
		}
		if ns.Path == "" {
			continue
		}
		f, ok := facts[ns.Path]
		if !ok {
			var err error
			if f, err = r.Inspect(ns.Path); err != nil {
				return Namespaces{}, fmt.Errorf("%s namespace path: %w", ns.Type, err)
			}
			facts[ns.Path] = f
		}
		if f.Kind != ns.Type {
			return Namespaces{}, fmt.Errorf("%s namespace path %s is a %s namespace", ns.Type, ns.Path, f.Kind)
		}
	}
	if err := checkHostShared(spec, facts, r.Host); err != nil {
		return Namespaces{}, err
	}
	return joins(spec, facts, r.Host)
}

func knownNamespace(t specs.LinuxNamespaceType) bool {
	for _, k := range knownNamespaces {
		if k == t {
			return true
		}
	}
	return false
}

func checkHostShared(spec *specs.Spec, facts map[string]NamespaceFacts, host func(specs.LinuxNamespaceType) (NamespaceID, error)) error {
	var shared []string
	for _, iso := range isolatedNamespaces {
		path, found := namespacePath(spec, iso.typ)
		if !found {
			shared = append(shared, iso.word)
			continue
		}
		if path == "" {
			continue
		}
		h, err := host(iso.typ)
		if err != nil {
			return fmt.Errorf("%s namespace %s: read host namespace: %w", iso.word, path, err)
		}
		if facts[path].ID == h {
			shared = append(shared, iso.word)
		}
	}
	if len(shared) > 0 {
		return fmt.Errorf("invalid or unsupported container spec: %w", &HostNamespaceError{Shared: shared})
	}
	return nil
}

// joins works out whose user namespace the container must use. A
// container joining namespaces that another container's user namespace
// owns must be in that user namespace too: its root could not use them
// from a user namespace of its own, and two ranges would then share a
// network or process tree. Namespaces the host's user namespace owns (a
// pod's netns made by the CNI plugin) leave the container a user namespace
// of its own.
func joins(spec *specs.Spec, facts map[string]NamespaceFacts, host func(specs.LinuxNamespaceType) (NamespaceID, error)) (Namespaces, error) {
	var v Namespaces
	var hostUser *NamespaceID
	for _, ns := range spec.Linux.Namespaces {
		switch ns.Type {
		case specs.UserNamespace, specs.CgroupNamespace, specs.TimeNamespace:
			continue // always the container's own
		}
		if ns.Path == "" {
			continue
		}
		if hostUser == nil {
			h, err := host(specs.UserNamespace)
			if err != nil {
				return Namespaces{}, fmt.Errorf("read own user namespace: %w", err)
			}
			hostUser = &h
		}
		f := facts[ns.Path]
		if f.Owner == *hostUser {
			if err := hostOwned(ns, f); err != nil {
				return Namespaces{}, err
			}
			v.HostNet = ns.Path
			continue
		}
		if v.Join != "" && v.JoinOwner != f.Owner {
			return Namespaces{}, fmt.Errorf("namespaces %s and %s belong to two different containers: a container can join the namespaces of one container only", v.Join, ns.Path)
		}
		if v.Join == "" {
			v.Join, v.JoinOwner = ns.Path, f.Owner
		}
	}
	return v, nil
}

// hostOwned judges a namespace to join that the host's user namespace
// owns (the host's own were refused before). Only a network namespace
// pinned by a file, as CNI, ip netns and podman make for a container, is
// allowed: the container's root cannot use an ipc, uts, pid or mount
// namespace it does not own (libcontainer would fail deep inside, on
// mqueue, sethostname, proc or MS_SLAVE), and a /proc/<pid>/ns link names
// a process outside any moat container, such as a runc container.
func hostOwned(ns specs.LinuxNamespace, f NamespaceFacts) error {
	if !f.Pinned {
		return fmt.Errorf("can't join the %s namespace %s: it belongs to a process that is not in a moat container; %s", ns.Type, ns.Path, JoinOnlyMoat)
	}
	if ns.Type != specs.NetworkNamespace {
		return fmt.Errorf("can't join the %s namespace %s: the host's user namespace owns it, so the container's root could not use it; %s, and network namespaces made for them", ns.Type, ns.Path, JoinOnlyMoat)
	}
	return nil
}

// CheckJoinedMappings judges the user namespace a join leads to (through
// the path via) by its mappings, and returns the first host uid of its
// range: moat's containers map one range from container ID 0, so anything
// else is not a moat container.
func CheckJoinedMappings(via string, uids, gids []specs.LinuxIDMapping) (uint32, error) {
	if len(uids) != 1 || len(gids) != 1 || uids[0].ContainerID != 0 || gids[0].ContainerID != 0 {
		return 0, errors.New("namespace " + via + " belongs to a user namespace that moat did not make; " + JoinOnlyMoat)
	}
	return uids[0].HostID, nil
}

func namespacePath(spec *specs.Spec, t specs.LinuxNamespaceType) (string, bool) {
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == t {
			return ns.Path, true
		}
	}
	return "", false
}
