package runtime

import (
	"errors"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/moatrt/moat/idmap"
)

// joinTarget is the user namespace of another moat container whose
// namespaces a new container joins (docker's --network=container:X,
// --pid=container:X, a pod's sandbox).
type joinTarget struct {
	// userns is the path of that user namespace, through a process in it.
	userns string
	// uid is the first host uid of that container's range.
	uid uint32
	// via is the namespace path that led there, for messages.
	via string
}

// joinOnlyMoat ends the messages of joins that moat refuses.
const joinOnlyMoat = "moat containers can only join the namespaces of other moat containers"

// hostOwned judges a namespace to join that the host's user namespace
// owns (the host's own were refused before). Only a network namespace
// pinned by a file, as CNI, ip netns and podman make for a container, is
// allowed: the container's root cannot use an ipc, uts, pid or mount
// namespace it does not own (libcontainer would fail deep inside, on
// mqueue, sethostname, proc or MS_SLAVE), and a /proc/<pid>/ns link names
// a process outside any moat container, such as a runc container.
func hostOwned(ns specs.LinuxNamespace) error {
	pinned, err := idmap.IsPinnedNamespace(ns.Path)
	if err != nil {
		return fmt.Errorf("%s namespace %s: %w", ns.Type, ns.Path, err)
	}
	if !pinned {
		return fmt.Errorf("can't join the %s namespace %s: it belongs to a process that is not in a moat container; %s", ns.Type, ns.Path, joinOnlyMoat)
	}
	if ns.Type != specs.NetworkNamespace {
		return fmt.Errorf("can't join the %s namespace %s: the host's user namespace owns it, so the container's root could not use it; %s, and network namespaces made for them", ns.Type, ns.Path, joinOnlyMoat)
	}
	return nil
}

// joinedUserns works out whose user namespace a container must use. A
// container joining namespaces that another container's user namespace owns
// must be in that user namespace too: its root could not use them from a
// user namespace of its own, and two ranges would then share a network or
// process tree. Namespaces the host's user namespace owns (a pod's netns
// made by the CNI plugin) leave the container a user namespace of its own;
// the host's own namespaces were refused before. hostNet is the path of the
// network namespace the container joins if the host's user namespace owns
// it: the container's root cannot mount its sysfs (see stageSysfs).
func joinedUserns(spec *specs.Spec) (join *joinTarget, hostNet string, err error) {
	host, err := idmap.NamespaceID(hostNamespace("user"))
	if err != nil {
		return nil, "", fmt.Errorf("read own user namespace: %w", err)
	}
	var (
		owner *idmap.NSID
		via   string
		hint  int
	)
	for _, ns := range spec.Linux.Namespaces {
		switch ns.Type {
		case specs.UserNamespace, specs.CgroupNamespace, specs.TimeNamespace:
			continue // always the container's own
		}
		if ns.Path == "" {
			continue
		}
		o, err := idmap.OwnerUserns(ns.Path)
		if err != nil {
			return nil, "", fmt.Errorf("%s namespace %s: %w", ns.Type, ns.Path, err)
		}
		if o == host {
			if err := hostOwned(ns); err != nil {
				return nil, "", err
			}
			hostNet = ns.Path
			continue
		}
		if owner != nil && *owner != o {
			return nil, "", fmt.Errorf("namespaces %s and %s belong to two different containers: a container can join the namespaces of one container only", via, ns.Path)
		}
		if owner == nil {
			owner, via, hint = &o, ns.Path, idmap.PidOfNSPath(ns.Path)
		}
	}
	if owner == nil {
		return nil, hostNet, nil
	}
	pid, err := idmap.FindUserns(*owner, hint)
	if err != nil {
		return nil, "", fmt.Errorf("namespace %s: find its container: %w", via, err)
	}
	uids, gids, err := idmap.ReadMappings(pid)
	if err != nil {
		return nil, "", fmt.Errorf("namespace %s: %w", via, err)
	}
	if len(uids) != 1 || len(gids) != 1 || uids[0].ContainerID != 0 || gids[0].ContainerID != 0 {
		return nil, "", errors.New("namespace " + via + " belongs to a user namespace that moat did not make; " + joinOnlyMoat)
	}
	return &joinTarget{userns: fmt.Sprintf("/proc/%d/ns/user", pid), uid: uids[0].HostID, via: via}, hostNet, nil
}
