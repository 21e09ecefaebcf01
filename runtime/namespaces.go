package runtime

import (
	"errors"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/idmap"
	"github.com/moatrt/moat/policy"
)

// nsKinds are the spec's namespace types by their CLONE_NEW* flag and by
// their name under /proc/<pid>/ns.
var nsKinds = []struct {
	typ  specs.LinuxNamespaceType
	flag int
	proc string
}{
	{specs.PIDNamespace, unix.CLONE_NEWPID, "pid"},
	{specs.NetworkNamespace, unix.CLONE_NEWNET, "net"},
	{specs.IPCNamespace, unix.CLONE_NEWIPC, "ipc"},
	{specs.UTSNamespace, unix.CLONE_NEWUTS, "uts"},
	{specs.MountNamespace, unix.CLONE_NEWNS, "mnt"},
	{specs.UserNamespace, unix.CLONE_NEWUSER, "user"},
	{specs.CgroupNamespace, unix.CLONE_NEWCGROUP, "cgroup"},
	{specs.TimeNamespace, unix.CLONE_NEWTIME, "time"},
}

// inspectNamespace is the policy's NamespaceRules.Inspect for the host.
func inspectNamespace(path string) (policy.NamespaceFacts, error) {
	ns, err := idmap.InspectNamespace(path)
	if err != nil {
		return policy.NamespaceFacts{}, err
	}
	f := policy.NamespaceFacts{
		Kind:   specs.LinuxNamespaceType(fmt.Sprintf("0x%x", ns.Type)),
		ID:     policy.NamespaceID(ns.ID),
		Owner:  policy.NamespaceID(ns.Owner),
		Pinned: ns.Pinned,
	}
	for _, k := range nsKinds {
		if k.flag == ns.Type {
			f.Kind = k.typ
		}
	}
	return f, nil
}

// hostNamespaceID is the policy's NamespaceRules.Host: the identity of
// init's namespace of a type, or, where init's cannot be read (a sandboxed
// PID 1), moat's own, since dockerd and containerd's shim run moat in the
// host's namespaces.
func hostNamespaceID(t specs.LinuxNamespaceType) (policy.NamespaceID, error) {
	for _, k := range nsKinds {
		if k.typ != t {
			continue
		}
		id, err := idmap.NamespaceID("/proc/1/ns/" + k.proc)
		if errors.Is(err, os.ErrPermission) || errors.Is(err, os.ErrNotExist) {
			id, err = idmap.NamespaceID("/proc/self/ns/" + k.proc)
		}
		return policy.NamespaceID(id), err
	}
	return policy.NamespaceID{}, fmt.Errorf("unknown namespace type %q", t)
}

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

// judgeNamespaces has the policy judge the spec's namespaces on the
// kernel's facts, and finds the moat container whose user namespace a
// join leads to. hostNet is the path of the network namespace the
// container joins if the host's user namespace owns it: the container's
// root cannot mount its sysfs (see stageSysfs).
func judgeNamespaces(spec *specs.Spec) (join *joinTarget, hostNet string, err error) {
	v, err := policy.CheckNamespaces(spec, policy.NamespaceRules{Inspect: inspectNamespace, Host: hostNamespaceID})
	if err != nil {
		return nil, "", err
	}
	if v.Join == "" {
		return nil, v.HostNet, nil
	}
	pid, err := idmap.FindUserns(idmap.NSID(v.JoinOwner), idmap.PidOfNSPath(v.Join))
	if err != nil {
		return nil, "", fmt.Errorf("namespace %s: find its container: %w", v.Join, err)
	}
	uids, gids, err := idmap.ReadMappings(pid)
	if err != nil {
		return nil, "", fmt.Errorf("namespace %s: %w", v.Join, err)
	}
	uid, err := policy.CheckJoinedMappings(v.Join, specMappings(uids), specMappings(gids))
	if err != nil {
		return nil, "", err
	}
	return &joinTarget{userns: fmt.Sprintf("/proc/%d/ns/user", pid), uid: uid, via: v.Join}, v.HostNet, nil
}

func specMappings(ms []idmap.Mapping) []specs.LinuxIDMapping {
	out := make([]specs.LinuxIDMapping, len(ms))
	for i, m := range ms {
		out[i] = specs.LinuxIDMapping{ContainerID: m.ContainerID, HostID: m.HostID, Size: m.Size}
	}
	return out
}
