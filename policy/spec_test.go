package policy

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestIsolateUsernsOverridesCaller(t *testing.T) {
	spec := &specs.Spec{Linux: &specs.Linux{
		Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace},
			{Type: specs.UserNamespace, Path: "/proc/1/ns/user"},
			{Type: specs.CgroupNamespace, Path: "/proc/1/ns/cgroup"},
			{Type: specs.TimeNamespace, Path: "/proc/1/ns/time"},
		},
		UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 4294967295}},
		Sysctl:      map[string]string{"net.ipv4.ping_group_range": "0 2147483647"},
	}}
	IsolateUserns(spec, Mapping{UID: 165536, GID: 165536, Size: 65536}, "", 4242)
	count := map[specs.LinuxNamespaceType]int{}
	for _, ns := range spec.Linux.Namespaces {
		count[ns.Type]++
		if ns.Type != specs.PIDNamespace && ns.Path != "" {
			t.Errorf("%s namespace keeps the caller's path %q", ns.Type, ns.Path)
		}
	}
	for _, typ := range []specs.LinuxNamespaceType{specs.UserNamespace, specs.CgroupNamespace, specs.TimeNamespace} {
		if count[typ] != 1 {
			t.Errorf("want one private %s namespace, got %d: %+v", typ, count[typ], spec.Linux.Namespaces)
		}
	}
	// The offset takes the container's boot clock back to zero.
	if off := spec.Linux.TimeOffsets["boottime"]; off.Secs != -4242 {
		t.Errorf("boottime offset %+v with host uptime 4242s", off)
	}
	want := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 165536, Size: 65536}}
	if !reflect.DeepEqual(spec.Linux.UIDMappings, want) || !reflect.DeepEqual(spec.Linux.GIDMappings, want) {
		t.Errorf("mappings %+v %+v, want %+v", spec.Linux.UIDMappings, spec.Linux.GIDMappings, want)
	}
	if got := spec.Linux.Sysctl["net.ipv4.ping_group_range"]; got != "0 65535" {
		t.Errorf("ping_group_range %q, want it clamped to the mapped groups", got)
	}
}

// Joining another container's user namespace leaves the mapping to it.
func TestIsolateUsernsJoin(t *testing.T) {
	spec := &specs.Spec{Linux: &specs.Linux{
		UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 1}},
	}}
	IsolateUserns(spec, Mapping{UID: 165536, GID: 165536, Size: 65536}, "/proc/42/ns/user", 1)
	if spec.Linux.UIDMappings != nil || spec.Linux.GIDMappings != nil {
		t.Errorf("mappings set for a joined user namespace: %+v %+v", spec.Linux.UIDMappings, spec.Linux.GIDMappings)
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.UserNamespace && ns.Path != "/proc/42/ns/user" {
			t.Errorf("user namespace path %q", ns.Path)
		}
	}
}
